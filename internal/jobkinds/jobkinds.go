// Package jobkinds holds kiln's built-in job handlers.
package jobkinds

import (
	"context"
	"fmt"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// SleepArgs are the arguments of the sleep kind.
type SleepArgs struct {
	// MS is how long to sleep, in milliseconds (0..86,400,000).
	MS int64 `json:"ms"`
}

// Validate checks the range of MS.
func (a *SleepArgs) Validate() error {
	if a.MS < 0 || a.MS > 24*3600*1000 {
		return fmt.Errorf("ms must be between 0 and 86400000, got %d", a.MS)
	}
	return nil
}

// FailArgs are the arguments of the fail kind.
type FailArgs struct {
	// Times is how many attempts fail before one succeeds (0..1000).
	Times int `json:"times"`
	// Permanent makes the failures permanent (no retry).
	Permanent bool `json:"permanent,omitempty"`
}

// Validate checks the range of Times.
func (a *FailArgs) Validate() error {
	if a.Times < 0 || a.Times > 1000 {
		return fmt.Errorf("times must be between 0 and 1000, got %d", a.Times)
	}
	return nil
}

// Register adds the built-in kinds to w:
//
//   - noop: does nothing; accepts any JSON arguments.
//   - sleep {"ms":N}: sleeps N milliseconds (honouring cancellation),
//     reporting progress on sleeps of a second or more.
//   - fail {"times":N}: fails its first N attempts, then succeeds.
func Register(w *queue.Workers) {
	w.HandleFunc("noop", func(context.Context, *queue.Job) error { return nil })
	w.Handle("sleep", queue.Typed(sleep))
	w.Handle("fail", queue.Typed(fail))
}

func sleep(ctx context.Context, job *queue.Job, a SleepArgs) error {
	d := time.Duration(a.MS) * time.Millisecond
	if d < time.Second {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	// Long sleeps report progress about ten times.
	step := d / 10
	deadline := time.Now().Add(d)
	for i := 1; ; i++ {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		t := time.NewTimer(min(step, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
		_ = job.SetProgress(ctx, min(i*10, 99), fmt.Sprintf("slept %s of %s", min(time.Duration(i)*step, d), d))
	}
}

func fail(_ context.Context, job *queue.Job, a FailArgs) error {
	if job.Attempt > a.Times {
		return nil
	}
	err := fmt.Errorf("failing on purpose: attempt %d of the %d that fail", job.Attempt, a.Times)
	if a.Permanent {
		return queue.Permanent(err)
	}
	return err
}
