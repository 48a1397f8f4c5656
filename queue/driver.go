package queue

import (
	"context"
	"encoding/json"
	"time"
)

// Driver is the storage a [Client] runs on. kiln ships
// queue/sqlitedriver and queue/pgdriver; queue/queuetest is the
// conformance suite every driver must pass.
//
// Drivers never read the database's clock: every time they store or compare
// is passed in, so the engine's injected clock governs leases, schedules and
// retention. Methods that look up one job return an error wrapping
// [ErrNotFound] when it does not exist. The client adds the operation and
// the job's id to the errors of the methods that act on one job ("get job
// 8: job not found"), so a driver's errors for them name neither.
type Driver interface {
	// Name is a short name for logs and benchmarks: "sqlite", "postgres".
	Name() string
	// Migrate applies pending migrations; it returns an error wrapping
	// [ErrSchemaTooNew] when the database was migrated by a newer kiln.
	// Concurrent calls from several processes are safe.
	Migrate(ctx context.Context) error
	// SchemaVersion reports the database's migration version and the
	// newest this driver knows.
	SchemaVersion(ctx context.Context) (current, latest int, err error)
	// Close releases the driver's connections.
	Close() error

	// InsertMany inserts rows in order inside tx (nil: a transaction of the
	// driver's own) and returns one result per row, honouring unique keys.
	InsertMany(ctx context.Context, tx any, now time.Time, rows []Row) ([]InsertResult, error)
	// GetJob returns one job.
	GetJob(ctx context.Context, id int64) (*Job, error)
	// ListJobs returns jobs matching p, by id.
	ListJobs(ctx context.Context, p ListParams) ([]*Job, error)
	// Claim moves up to p.Limit available jobs of p.Queue, highest priority
	// then oldest RunAt first, to running with a new lease, and returns them.
	Claim(ctx context.Context, p ClaimParams) ([]*Job, error)
	// Finish records attempt outcomes in one transaction. applied[i] is
	// false when outcome i's lease no longer held (fenced off), or when
	// outcome i would leave the job unfinished (retryable, scheduled or
	// available) although its cancellation was requested: the engine then
	// records it as cancelled instead. Both checks are part of the write,
	// so a cancellation cannot slip in between.
	Finish(ctx context.Context, outcomes []Outcome) (applied []bool, err error)
	// ExtendLeases moves the lease expiry of still-held leases to until;
	// held[i] reports whether lease i was still held.
	ExtendLeases(ctx context.Context, leases []Lease, until time.Time) (held []bool, err error)
	// CancelRequested returns the ids, among ids, of running jobs whose
	// cancellation was requested.
	CancelRequested(ctx context.Context, ids []int64) ([]int64, error)
	// SetProgress stores progress for a running attempt, or returns
	// [ErrLeaseLost].
	SetProgress(ctx context.Context, l Lease, percent int, message string) error
	// ExpiredLeases returns up to limit running jobs whose lease expired
	// before now.
	ExpiredLeases(ctx context.Context, now time.Time, limit int) ([]*Job, error)

	// CancelJob cancels a job that has not finished: a waiting job moves to
	// cancelled (changed is true); a running job is flagged so its worker
	// cancels it. A finished job is returned unchanged. tx is the caller's
	// transaction, of the kinds InsertMany takes, or nil for one of the
	// driver's own.
	CancelJob(ctx context.Context, tx any, id int64, now time.Time) (job *Job, changed bool, err error)
	// RetryJob makes a failed, cancelled or completed job (or a waiting one)
	// available now, granting one more attempt if they are exhausted. It
	// returns an error wrapping [ErrWrongState] for a running job. tx is as
	// for CancelJob.
	RetryJob(ctx context.Context, tx any, id int64, now time.Time) (*Job, error)
	// DeleteJob deletes a job that is not running and returns it as it was;
	// a running job yields an error wrapping [ErrWrongState].
	DeleteJob(ctx context.Context, id int64) (*Job, error)

	// Promote makes up to limit scheduled and retryable jobs whose RunAt is
	// not after now available, and returns the queues it touched.
	Promote(ctx context.Context, now time.Time, limit int) (queues []string, err error)
	// NextRunAt returns the earliest RunAt of scheduled and retryable jobs;
	// ok is false when there are none.
	NextRunAt(ctx context.Context) (t time.Time, ok bool, err error)
	// Prune deletes up to p.Limit finished jobs finalized before the
	// cut-offs and returns how many it deleted.
	Prune(ctx context.Context, p PruneParams) (int, error)

	// QueueStats returns per-queue counts by state for every queue that has
	// jobs or a pause record.
	QueueStats(ctx context.Context, now time.Time) ([]QueueStats, error)
	// SetQueuePaused pauses or resumes a queue for every client.
	SetQueuePaused(ctx context.Context, queue string, paused bool, now time.Time) error
	// PausedQueues returns the paused queue names.
	PausedQueues(ctx context.Context) ([]string, error)

	// TryLead takes or renews the named leadership for id until now+ttl,
	// if nobody else holds an unexpired lease, and reports whether id leads.
	TryLead(ctx context.Context, name, id string, now time.Time, ttl time.Duration) (bool, error)
	// Resign gives up the named leadership if id holds it.
	Resign(ctx context.Context, name, id string) error
}

// Watcher is implemented by drivers that can tell a client promptly that
// jobs were inserted by another process. Watch calls notify with the queue
// name, or "" when it cannot tell which queue, until ctx is done.
type Watcher interface {
	Watch(ctx context.Context, notify func(queue string)) error
}

// ClaimParams are the arguments of [Driver.Claim].
type ClaimParams struct {
	Queue      string
	Limit      int
	Now        time.Time
	LeaseUntil time.Time
	Token      int64
	ClientID   string
}

// Outcome is the result of one attempt, or of a rescue, for [Driver.Finish].
type Outcome struct {
	Lease Lease
	// State is the job's next state: completed, failed or cancelled (final),
	// retryable or scheduled (with RunAt), or available (handed back).
	State JobState
	// At is the time of the transition (finalized_at for final states).
	At    time.Time
	RunAt time.Time
	// Error, when set, is appended to the job's errors.
	Error *AttemptError
	// Result is stored for completed jobs.
	Result json.RawMessage
	// UndoAttempt gives the attempt back (snooze, hand-back at shutdown).
	UndoAttempt bool
	// ExpiredBefore, when set, applies the outcome only if the lease expired
	// before it (the rescuer's guard against a heartbeat that just landed).
	ExpiredBefore time.Time
}

// ListParams filter [Driver.ListJobs]. Empty slices match everything.
type ListParams struct {
	States []JobState
	Kinds  []string
	Queues []string
	// AfterID returns jobs after this id in the listing order (a cursor).
	AfterID int64
	// Desc lists newest first; AfterID then means "before".
	Desc  bool
	Limit int
}

// PruneParams are the cut-offs of [Driver.Prune]; a zero time prunes
// nothing of that state.
type PruneParams struct {
	CompletedBefore time.Time
	FailedBefore    time.Time
	CancelledBefore time.Time
	Limit           int
}

// QueueStats describes one queue.
type QueueStats struct {
	Name   string             `json:"name"`
	Paused bool               `json:"paused"`
	Counts map[JobState]int64 `json:"counts"`
	// OldestAvailable is the RunAt of the longest-waiting available job.
	OldestAvailable *time.Time `json:"oldest_available,omitempty"`
}
