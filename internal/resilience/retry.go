// Package resilience retries calls with backoff and keeps circuit
// breakers for the destinations kiln calls out to, so that one failing
// dependency is given room to recover instead of being hammered.
//
// [Do] retries a call in process, with exponential backoff and full
// jitter; it is for short waits (a busy database, a flaky connection).
// Long waits belong to the job engine, whose retries survive restarts.
// [Breakers] is a bounded set of circuit breakers keyed by destination.
//
// [Retry] takes its clock, sleep and randomness as fields and
// [BreakerOptions] its clock, so that tests run without waiting.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/kilnhq/kiln/internal/defaults"
	"github.com/kilnhq/kiln/queue"
)

// The defaults of [Retry]'s zero fields.
const (
	DefaultMaxAttempts = 3
	DefaultBase        = 100 * time.Millisecond
	DefaultMax         = 10 * time.Second
)

// Retry says how [Do] retries. Zero fields take the defaults.
type Retry struct {
	// MaxAttempts is the number of calls, the first included (default 3;
	// 1 means no retry).
	MaxAttempts int
	// MaxElapsed, if positive, stops retrying when the next wait would
	// end more than MaxElapsed after the first call started.
	MaxElapsed time.Duration
	// Base and Max shape the backoff: the wait after the nth failure is
	// a random duration in [0, min(Max, Base×2^(n-1))) ("full jitter").
	// Defaults 100ms and 10s.
	Base, Max time.Duration
	// Sleep waits d or until ctx is done, returning ctx's cause then;
	// default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns numbers in [0,1); default math/rand/v2.
	Rand func() float64
	// Now tells the time for MaxElapsed; default time.Now.
	Now func() time.Time
	// OnRetry, if set, is called before each wait with the number of the
	// call that failed (1 for the first), its error and the wait.
	OnRetry func(attempt int, err error, wait time.Duration)
}

func (r Retry) withDefaults() Retry {
	defaults.Positive(&r.MaxAttempts, DefaultMaxAttempts)
	defaults.Positive(&r.Base, DefaultBase)
	defaults.Positive(&r.Max, DefaultMax)
	if r.Sleep == nil {
		r.Sleep = sleep
	}
	if r.Rand == nil {
		r.Rand = rand.Float64
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return r
}

// Ceiling returns the upper bound of the wait after the nth failure
// (n ≥ 1): min(Max, Base×2^(n-1)). Zero fields take the defaults.
func (r Retry) Ceiling(n int) time.Duration {
	r = r.withDefaults()
	if n < 1 {
		n = 1
	}
	f := float64(r.Base) * math.Pow(2, float64(min(n-1, 62)))
	if f >= float64(r.Max) {
		return r.Max
	}
	return time.Duration(f)
}

// Delay returns the wait after the nth failure: a random duration in
// [0, Ceiling(n)), using r.Rand.
func (r Retry) Delay(n int) time.Duration {
	r = r.withDefaults()
	c := r.Ceiling(n)
	f := r.Rand()
	if f < 0 || f >= 1 || math.IsNaN(f) {
		f = 0
	}
	return time.Duration(f * float64(c))
}

// Do calls fn until it returns nil, and returns nil then. It stops and
// returns fn's last error, wrapped with the number of calls made, when
// the attempts run out or the next wait would pass MaxElapsed; it stops
// at once, returning the error as is, when the error is permanent
// ([IsPermanent]: made by [Permanent] or queue.Permanent). When ctx is
// done before a call or during a wait it returns an error wrapping both
// ctx's cause and the last error. An error made by [RetryAfter] (or
// queue.RetryAfter) makes the next wait at least as long as it asks.
func Do(ctx context.Context, r Retry, fn func(ctx context.Context) error) error {
	r = r.withDefaults()
	start := r.Now()
	var last error
	for n := 1; ; n++ {
		if ctx.Err() != nil {
			return stopped(ctx, n-1, last)
		}
		err := fn(ctx)
		if err == nil {
			return nil
		}
		last = err
		if IsPermanent(err) {
			return err
		}
		if n >= r.MaxAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", n, err)
		}
		wait := r.Delay(n)
		if d, ok := RetryAfterHint(err); ok && d > wait {
			wait = d
		}
		if r.MaxElapsed > 0 && r.Now().Add(wait).Sub(start) > r.MaxElapsed {
			return fmt.Errorf("gave up after %d attempts (another wait of %s would pass the %s limit): %w", n, wait, r.MaxElapsed, err)
		}
		if r.OnRetry != nil {
			r.OnRetry(n, err, wait)
		}
		if err := r.Sleep(ctx, wait); err != nil {
			return stopped(ctx, n, last)
		}
	}
}

// stopped is Do's error when ctx ends it after n calls.
func stopped(ctx context.Context, n int, last error) error {
	cause := context.Cause(ctx)
	if cause == nil {
		cause = context.Canceled
	}
	if last == nil {
		return fmt.Errorf("not attempted: %w", cause)
	}
	return fmt.Errorf("stopped after %d attempts: %w; last error: %w", n, cause, last)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// permanentError marks an error not worth retrying.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err so that [Do] returns it at once instead of
// retrying. Permanent(nil) is nil. The message is err's.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was made by
// [Permanent] or by queue.Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p) || queue.IsPermanent(err)
}

// retryAfterError carries the shortest wait before the next call.
type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err with the shortest wait before the next call (a
// server's Retry-After, say); [Do] waits at least d, longer if its
// backoff says so. RetryAfter(nil, d) is nil; a negative d is zero.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err, max(d, 0)}
}

// RetryAfterHint returns the wait asked for by [RetryAfter] or
// queue.RetryAfter in err's chain, and whether there was one.
func RetryAfterHint(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.d, true
	}
	return queue.RetryAfterDelay(err)
}
