-- Idempotency-Key records: one per (caller, key). A record is "running"
-- while the first request is served, then holds its response.
CREATE TABLE idempotency_keys (
	principal text NOT NULL,
	key text NOT NULL,
	request_hash bytea NOT NULL,
	state text NOT NULL CHECK (state IN ('running', 'done')),
	status integer NOT NULL DEFAULT 0,
	headers text NOT NULL DEFAULT '{}',
	body bytea,
	created_at timestamptz NOT NULL,
	locked_until timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
