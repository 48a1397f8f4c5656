-- kiln job engine schema, version 1.
-- Every time is written by the engine's clock; no default reads now().
CREATE TABLE kiln_jobs (
    id               bigserial   PRIMARY KEY,
    kind             text        NOT NULL,
    queue            text        NOT NULL,
    args             jsonb       NOT NULL,
    state            text        NOT NULL CHECK (state IN ('available','scheduled','running','retryable','completed','failed','cancelled')),
    priority         integer     NOT NULL DEFAULT 0,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    attempted_at     timestamptz,
    finalized_at     timestamptz,
    attempted_by     text,
    lease_token      bigint,
    lease_expires_at timestamptz,
    errors           jsonb,
    progress         integer     NOT NULL DEFAULT 0,
    progress_message text,
    result           jsonb,
    unique_key       text,
    retry            jsonb,
    timeout_ms       bigint      NOT NULL DEFAULT 0,
    cancel_requested boolean     NOT NULL DEFAULT false,
    metadata         jsonb
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
CREATE INDEX kiln_jobs_cancel ON kiln_jobs (id) WHERE cancel_requested;

CREATE TABLE kiln_queues (
    name       text PRIMARY KEY,
    paused_at  timestamptz,
    updated_at timestamptz NOT NULL
);

CREATE TABLE kiln_leaders (
    name       text        PRIMARY KEY,
    leader_id  text        NOT NULL,
    expires_at timestamptz NOT NULL
);
