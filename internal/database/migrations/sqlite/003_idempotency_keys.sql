-- Idempotency-Key records: one per (caller, key). A record is "running"
-- while the first request is served, then holds its response.
CREATE TABLE idempotency_keys (
	principal TEXT NOT NULL,
	key TEXT NOT NULL,
	request_hash BLOB NOT NULL,
	state TEXT NOT NULL CHECK (state IN ('running', 'done')),
	status INTEGER NOT NULL DEFAULT 0,
	headers TEXT NOT NULL DEFAULT '{}',
	body BLOB,
	created_at INTEGER NOT NULL,
	locked_until INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
