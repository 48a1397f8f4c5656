package queue

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// DefaultQueue is the queue a job goes to when it names none.
const DefaultQueue = "default"

// InsertParams describes one job to insert.
type InsertParams struct {
	// Kind names the handler that works the job. Required.
	Kind string
	// Args is the job's JSON arguments; nil means {}.
	Args json.RawMessage
	// Opts are optional settings.
	Opts InsertOpts
}

// InsertOpts are the optional settings of an inserted job.
type InsertOpts struct {
	// Queue defaults to the kind's queue, else [DefaultQueue].
	Queue string
	// Priority orders available jobs of a queue: higher runs first.
	// Range -1000..1000, default 0.
	Priority int
	// RunAt schedules the job; zero means now. RunIn is added to now when
	// RunAt is zero.
	RunAt time.Time
	RunIn time.Duration
	// Retry overrides the kind's retry policy for this job; nil keeps it.
	Retry *RetryPolicy
	// Timeout overrides the kind's timeout for this job; zero keeps it,
	// negative means no timeout.
	Timeout time.Duration
	// UniqueKey, when set, makes the insert return the existing job of the
	// same kind and key instead of inserting a new one, if that job is in
	// one of UniqueStates and was created within UniqueFor.
	UniqueKey string
	// UniqueFor limits the uniqueness window; zero means forever.
	UniqueFor time.Duration
	// UniqueStates defaults to every state but failed and cancelled.
	UniqueStates []JobState
	// Metadata is free-form JSON stored with the job (trace context, tags).
	Metadata json.RawMessage
}

// DefaultUniqueStates are the states a unique key covers by default: a
// failed or cancelled job does not block a new one.
var DefaultUniqueStates = []JobState{StateAvailable, StateScheduled, StateRunning, StateRetryable, StateCompleted}

// InsertResult is the outcome of inserting one job.
type InsertResult struct {
	Job *Job
	// Duplicate is true when a unique key matched an existing job, which is
	// returned instead of a new one.
	Duplicate bool
}

// Limits on inserted jobs.
const (
	MaxKindLength  = 200
	MaxQueueLength = 200
	MaxArgsBytes   = 1 << 20
	MaxPriority    = 1000
	MaxUniqueKey   = 500
)

// Row is an insert ready for a driver: validated, defaults applied.
type Row struct {
	Kind         string
	Queue        string
	Args         json.RawMessage
	State        JobState
	Priority     int
	MaxAttempts  int
	RunAt        time.Time
	Retry        *RetryPolicy
	Timeout      time.Duration // a whole number of milliseconds; negative: none
	UniqueKey    string
	UniqueSince  time.Time // zero: no window
	UniqueStates []JobState
	Metadata     json.RawMessage
}

// validName reports whether s is a usable kind or queue name: printable
// ASCII without spaces.
func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// checkKind reports an unusable kind name as ErrInvalid.
func checkKind(kind string) error {
	if !validName(kind, MaxKindLength) {
		return fmt.Errorf("%w: kind %q must be 1-%d printable characters without spaces", ErrInvalid, kind, MaxKindLength)
	}
	return nil
}

// toRow validates p and resolves its defaults against now and the kind's
// settings (kc may be nil).
func (p InsertParams) toRow(now time.Time, kc *KindConfig, def RetryPolicy) (Row, error) {
	if err := checkKind(p.Kind); err != nil {
		return Row{}, err
	}
	args := p.Args
	if len(strings.TrimSpace(string(args))) == 0 {
		args = json.RawMessage("{}")
	}
	if len(args) > MaxArgsBytes {
		return Row{}, fmt.Errorf("%w: args are %d bytes, the limit is %d", ErrInvalid, len(args), MaxArgsBytes)
	}
	if !json.Valid(args) {
		return Row{}, fmt.Errorf("%w: args are not valid JSON", ErrInvalid)
	}
	o := p.Opts
	q := o.Queue
	if q == "" && kc != nil {
		q = kc.Queue
	}
	if q == "" {
		q = DefaultQueue
	}
	if !validName(q, MaxQueueLength) {
		return Row{}, fmt.Errorf("%w: queue %q must be 1-%d printable characters without spaces", ErrInvalid, q, MaxQueueLength)
	}
	if o.Priority < -MaxPriority || o.Priority > MaxPriority {
		return Row{}, fmt.Errorf("%w: priority %d is outside -%d..%d", ErrInvalid, o.Priority, MaxPriority, MaxPriority)
	}
	if o.RunIn < 0 {
		return Row{}, fmt.Errorf("%w: run_in must not be negative", ErrInvalid)
	}
	if len(o.UniqueKey) > MaxUniqueKey {
		return Row{}, fmt.Errorf("%w: unique key is longer than %d bytes", ErrInvalid, MaxUniqueKey)
	}
	if o.UniqueFor < 0 {
		return Row{}, fmt.Errorf("%w: unique_for must not be negative", ErrInvalid)
	}
	if len(o.Metadata) > 0 && !json.Valid(o.Metadata) {
		return Row{}, fmt.Errorf("%w: metadata is not valid JSON", ErrInvalid)
	}
	for _, s := range o.UniqueStates {
		if !s.Valid() {
			return Row{}, fmt.Errorf("%w: unknown unique state %q", ErrInvalid, s)
		}
	}
	policy := def
	if kc != nil {
		policy = kc.Retry.merge(def)
	}
	var retry *RetryPolicy
	if o.Retry != nil {
		if err := o.Retry.Validate(); err != nil {
			return Row{}, err
		}
		r := *o.Retry
		retry = &r
		policy = r.merge(policy)
	}
	// Drivers store timeouts in whole milliseconds. Keep "no timeout"
	// (negative) and sub-millisecond timeouts from truncating to zero,
	// which would mean "the kind's timeout".
	timeout := o.Timeout
	switch {
	case timeout < 0:
		timeout = -time.Millisecond
	case timeout > 0 && timeout < time.Millisecond:
		timeout = time.Millisecond
	}
	run := o.RunAt
	if run.IsZero() {
		run = now.Add(o.RunIn)
	}
	state := StateAvailable
	if run.After(now) {
		state = StateScheduled
	}
	r := Row{
		Kind: p.Kind, Queue: q, Args: args, State: state, Priority: o.Priority,
		// Drivers may store attempts in 32 bits (PostgreSQL's integer);
		// math.MaxInt, a natural "retry forever", would otherwise wrap to
		// -1 and fail the job at its first error.
		MaxAttempts: min(policy.MaxAttempts, math.MaxInt32), RunAt: run, Retry: retry, Timeout: timeout,
		UniqueKey: o.UniqueKey, Metadata: o.Metadata,
	}
	if o.UniqueKey != "" {
		r.UniqueStates = o.UniqueStates
		if len(r.UniqueStates) == 0 {
			r.UniqueStates = DefaultUniqueStates
		}
		if o.UniqueFor > 0 {
			r.UniqueSince = now.Add(-o.UniqueFor)
		}
	}
	return r, nil
}
