-- The outcome of a keyed request's work, recorded in the transaction
-- that does the work, so that a retry after a crash between that commit
-- and the stored response returns the work instead of doing it again.
-- NULL while no work has committed.
ALTER TABLE idempotency_keys ADD COLUMN work BLOB;
