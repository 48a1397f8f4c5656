-- Webhook endpoints, the deliveries made to them (one webhook.deliver
-- job each) and every attempt at a delivery. Times are Unix
-- microseconds (UTC).
CREATE TABLE webhook_endpoints (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	url TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	-- The signing secret: the key of each delivery's HMAC, so it is
	-- kept as is.
	secret TEXT NOT NULL,
	created_at INTEGER NOT NULL
);

-- payload is the JSON object as sent (compacted), kept as text so the
-- bytes signed are the bytes stored. status is pending until an attempt
-- delivers it or it fails for good.
CREATE TABLE webhook_deliveries (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	event TEXT NOT NULL,
	payload TEXT NOT NULL,
	job_id INTEGER NOT NULL,
	status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
	attempts INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	finished_at INTEGER
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id);

-- One row per try, numbered from 1 per delivery, including the tries
-- that an open circuit breaker put off without a request (error
-- 'circuit open', outcome 'snoozed'). job_attempt is the job's attempt.
CREATE TABLE webhook_attempts (
	delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
	seq INTEGER NOT NULL,
	job_attempt INTEGER NOT NULL,
	started_at INTEGER NOT NULL,
	duration_ms INTEGER NOT NULL,
	status_code INTEGER,
	error TEXT NOT NULL DEFAULT '',
	outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed', 'snoozed', 'interrupted')),
	response_body TEXT NOT NULL DEFAULT '',
	retry_at INTEGER,
	PRIMARY KEY (delivery_id, seq)
);
