package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// TestCancelWatcherCancelsRequested: the watcher cancels the running
// attempts whose cancellation was requested in the database, and no
// others.
func TestCancelWatcherCancelsRequested(t *testing.T) {
	e := newEnv(t)
	wanted := queue.NewAttempt(e.start("q", 3))
	other := queue.NewAttempt(e.start("q", 3))
	checks := &counter{}
	w := queue.NewCancelWatcher(queue.CancelWatcherConfig{
		Driver: e.d, Logger: discard(), Interval: 10 * time.Millisecond,
		Attempts: func() []*queue.Attempt {
			checks.add()
			return []*queue.Attempt{wanted, other}
		},
	})
	t.Cleanup(w.Stop)
	w.Start(e.ctx)
	checks.waitMore(t, 2, "two checks")
	if wanted.Cause() != nil || other.Cause() != nil {
		t.Fatalf("attempts cancelled before any request: %v, %v", wanted.Cause(), other.Cause())
	}

	// Requested in the database only, as another process would.
	if _, changed, err := e.d.CancelJob(e.ctx, nil, wanted.Job().ID, e.clock.Now()); err != nil || changed {
		t.Fatalf("cancel a running job: changed %v, err %v; want flagged", changed, err)
	}
	receive(t, wanted.Done(), "the attempt to be cancelled")
	if !errors.Is(wanted.Cause(), queue.ErrCancelRequestedCause) {
		t.Errorf("attempt cancelled because %v, want its cancellation requested", wanted.Cause())
	}
	// Two more checks: the second began after the one that cancelled.
	checks.waitMore(t, 2, "two more checks")
	if err := other.Cause(); err != nil {
		t.Errorf("an attempt nobody cancelled was cancelled: %v", err)
	}
}
