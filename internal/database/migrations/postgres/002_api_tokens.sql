-- API tokens. Only the SHA-256 of each token's secret is kept.
CREATE TABLE api_tokens (
	id text PRIMARY KEY,
	name text NOT NULL,
	scope text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
	secret_hash bytea NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz,
	revoked_at timestamptz,
	last_used_at timestamptz
);
