package queue

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by the engine. Test for them with errors.Is; they are
// usually wrapped with context.
var (
	// ErrNotFound means no job has the given id.
	ErrNotFound = errors.New("job not found")
	// ErrUnknownKind means no handler is registered for the job's kind on a
	// client that checks kinds.
	ErrUnknownKind = errors.New("unknown job kind")
	// ErrKindUnavailable means the kind is registered but cannot run in
	// this process (a tool it needs is missing); see [WithUnavailable].
	ErrKindUnavailable = errors.New("job kind unavailable")
	// ErrInvalid means insert parameters or job arguments were rejected.
	ErrInvalid = errors.New("invalid job")
	// ErrWrongState means the operation does not apply to the job's current
	// state (retrying a running job, deleting a running job, …).
	ErrWrongState = errors.New("job is in the wrong state for this operation")
	// ErrLeaseLost means the attempt no longer holds the job's lease: it was
	// rescued, handed back or finished, and its writes are refused.
	ErrLeaseLost = errors.New("job lease lost")
	// ErrNotRunning means a running-attempt method was called on a Job that
	// is a snapshot rather than a handler's running job.
	ErrNotRunning = errors.New("job is not a running attempt")
	// ErrSchemaTooNew means the database was migrated by a newer kiln than
	// this one; upgrade kiln instead of running an older binary against it.
	ErrSchemaTooNew = errors.New("database schema is newer than this kiln")
	// ErrStopped means the client has been stopped.
	ErrStopped = errors.New("client stopped")
)

// permanentError marks an error that must not be retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the job fails at once instead of being
// retried. Permanent(nil) returns nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// snoozeError asks the engine to run the job again after a delay.
type snoozeError struct{ d time.Duration }

func (e *snoozeError) Error() string { return fmt.Sprintf("snoozed for %s", e.d) }

// Snooze returns an error that, returned by a handler, puts the job back to
// scheduled to run again after d without using an attempt. A negative d is
// treated as zero.
func Snooze(d time.Duration) error {
	if d < 0 {
		d = 0
	}
	return &snoozeError{d: d}
}

// cancelError asks the engine to cancel the job.
type cancelError struct{ err error }

func (e *cancelError) Error() string { return "cancelled: " + e.err.Error() }
func (e *cancelError) Unwrap() error { return e.err }

// Cancel returns an error that, returned by a handler, moves the job to
// cancelled with reason recorded; it is not retried. A nil reason is
// recorded as "cancelled by handler".
func Cancel(reason error) error {
	if reason == nil {
		reason = errors.New("cancelled by handler")
	}
	return &cancelError{err: reason}
}

// IsSnooze reports whether err, or an error it wraps, was made by [Snooze].
func IsSnooze(err error) bool {
	var s *snoozeError
	return errors.As(err, &s)
}

// IsCancel reports whether err, or an error it wraps, was made by [Cancel].
func IsCancel(err error) bool {
	var c *cancelError
	return errors.As(err, &c)
}

// retryAfterError asks for the next attempt no sooner than a delay.
type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err so that, returned by a handler, the attempt fails as
// usual (it uses an attempt, and the job fails for good once its attempts
// run out) but the next attempt waits at least d, even if the retry
// policy's delay is shorter. Use it for a server's Retry-After. A longer
// policy delay wins. RetryAfter(nil, d) returns nil; a negative d is
// treated as zero.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, d: max(d, 0)}
}

// RetryAfterDelay returns the delay asked for by [RetryAfter] in err's
// chain, and whether there was one.
func RetryAfterDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.d, true
	}
	return 0, false
}
