-- kiln job engine schema, version 1.
-- Times are microseconds since the Unix epoch, written by the engine's clock.
CREATE TABLE kiln_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    args             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('available','scheduled','running','retryable','completed','failed','cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    attempted_at     INTEGER,
    finalized_at     INTEGER,
    attempted_by     TEXT,
    lease_token      INTEGER,
    lease_expires_at INTEGER,
    errors           TEXT,
    progress         INTEGER NOT NULL DEFAULT 0,
    progress_message TEXT,
    result           TEXT,
    unique_key       TEXT,
    retry            TEXT,
    timeout_ms       INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    metadata         TEXT
);

-- Claiming: the available jobs of a queue in claim order.
CREATE INDEX kiln_jobs_claim ON kiln_jobs (queue, priority DESC, run_at, id) WHERE state = 'available';
-- Promotion: scheduled and retryable jobs by due time.
CREATE INDEX kiln_jobs_due ON kiln_jobs (run_at) WHERE state IN ('scheduled', 'retryable');
-- Rescue: running jobs by lease expiry.
CREATE INDEX kiln_jobs_lease ON kiln_jobs (lease_expires_at) WHERE state = 'running';
-- Pruning: finished jobs by age.
CREATE INDEX kiln_jobs_finalized ON kiln_jobs (finalized_at) WHERE finalized_at IS NOT NULL;
-- Unique keys.
CREATE INDEX kiln_jobs_unique ON kiln_jobs (kind, unique_key) WHERE unique_key IS NOT NULL;
-- Cancellation requests of running jobs.
CREATE INDEX kiln_jobs_cancel ON kiln_jobs (id) WHERE cancel_requested = 1;

CREATE TABLE kiln_queues (
    name       TEXT PRIMARY KEY,
    paused_at  INTEGER,
    updated_at INTEGER NOT NULL
);

CREATE TABLE kiln_leaders (
    name       TEXT PRIMARY KEY,
    leader_id  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
