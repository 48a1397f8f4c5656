package queue

import (
	"encoding/json"
	"time"
)

// Job is a job as stored in the database. Jobs returned by [Client.Get] and
// [Client.List] are snapshots; the *Job a handler receives is additionally
// bound to its running attempt, so its methods ([Job.Progress],
// [Job.SetResult], [Job.Heartbeat]) act on it.
type Job struct {
	ID          int64           `json:"id"`
	Kind        string          `json:"kind"`
	Queue       string          `json:"queue"`
	Args        json.RawMessage `json:"args"`
	State       JobState        `json:"state"`
	Priority    int             `json:"priority"`
	Attempt     int             `json:"attempt"`
	MaxAttempts int             `json:"max_attempts"`
	// RunAt is when the job becomes (or became) available.
	RunAt       time.Time  `json:"run_at"`
	CreatedAt   time.Time  `json:"created_at"`
	AttemptedAt *time.Time `json:"attempted_at,omitempty"`
	FinalizedAt *time.Time `json:"finalized_at,omitempty"`
	// AttemptedBy is the ID of the client that ran the latest attempt.
	AttemptedBy string `json:"attempted_by,omitempty"`
	// Errors holds one entry per failed attempt, oldest first.
	Errors          []AttemptError  `json:"errors,omitempty"`
	Progress        int             `json:"progress"`
	ProgressMessage string          `json:"progress_message,omitempty"`
	Result          json.RawMessage `json:"result,omitempty"`
	UniqueKey       string          `json:"unique_key,omitempty"`
	// Retry is the job's own retry policy, or nil to use its kind's.
	Retry *RetryPolicy `json:"retry,omitempty"`
	// Timeout is the job's own timeout; zero means the kind's.
	Timeout         time.Duration   `json:"timeout,omitempty"`
	CancelRequested bool            `json:"cancel_requested,omitempty"`
	Metadata        json.RawMessage `json:"metadata,omitempty"`

	// LeaseToken fences writes about a running attempt. Drivers set it on
	// claim; users never need it.
	LeaseToken int64 `json:"-"`
	// LeaseExpiresAt is when the running attempt's lease runs out.
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`

	run *attempt
}

// AttemptError records why one attempt did not complete.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
	// Panic is true when the handler panicked; Stack then holds its stack.
	Panic bool   `json:"panic,omitempty"`
	Stack string `json:"stack,omitempty"`
}

// Lease identifies one running attempt of a job: the fence for every write
// about it.
type Lease struct {
	ID      int64
	Attempt int
	Token   int64
}

// lease returns the fence of j's current attempt.
func (j *Job) lease() Lease { return Lease{ID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken} }
