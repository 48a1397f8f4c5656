package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// TestHeartbeatExtendsLeases: every beat moves the leases of the running
// attempts to now+LeaseDuration on the clock; an attempt whose lease was
// lost is cancelled as such, unless its outcome is already decided.
func TestHeartbeatExtendsLeases(t *testing.T) {
	e := newEnv(t)
	kept := queue.NewAttempt(e.start("q", 3))
	decidedJob := e.start("q", 3)
	decided := queue.NewAttempt(decidedJob)
	decided.Decide()
	lostJob := e.start("q", 3)
	lost := queue.NewAttempt(lostJob)
	// Both jobs move on without the attempts, as when a rescuer took them.
	e.finish(decidedJob, queue.StateRetryable)
	e.finish(lostJob, queue.StateRetryable)

	const leaseDuration = 5 * time.Hour
	h := queue.NewHeartbeat(queue.HeartbeatConfig{
		Driver: e.d, Clock: e.clock, Logger: discard(),
		Interval: 10 * time.Millisecond, LeaseDuration: leaseDuration,
		Attempts: func() []*queue.Attempt {
			// The decided attempt comes before the lost one, so it was
			// seen in the beat that cancelled the lost one.
			return []*queue.Attempt{kept, decided, lost}
		},
	})
	t.Cleanup(h.Stop)
	h.Start(e.ctx)

	receive(t, lost.Done(), "the attempt whose lease was lost to be cancelled")
	if !errors.Is(lost.Cause(), queue.ErrLeaseLostCause) {
		t.Errorf("attempt cancelled because %v, want its lease lost", lost.Cause())
	}
	if err := decided.Cause(); err != nil {
		t.Errorf("an attempt whose outcome was decided was cancelled: %v", err)
	}
	for _, when := range []time.Duration{0, 10 * time.Minute} {
		until := e.clock.Advance(when).Add(leaseDuration)
		eventually(t, "the lease to be extended", func() bool {
			j := e.get(kept.Job().ID)
			return j.LeaseExpiresAt != nil && j.LeaseExpiresAt.Equal(until)
		})
	}
	if err := kept.Cause(); err != nil {
		t.Errorf("an attempt holding its lease was cancelled: %v", err)
	}
	h.Stop()
	h.Stop() // idempotent
}
