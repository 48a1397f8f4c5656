package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

func (e *env) rescuer(interval time.Duration, isLeader func() bool, rescued chan []queue.Event) *queue.Rescuer {
	r := queue.NewRescuer(queue.RescuerConfig{
		Driver: e.d, Clock: e.clock, Logger: discard(),
		Interval: interval, IsLeader: isLeader,
		Rescued: func(events []queue.Event) { rescued <- events },
	})
	e.t.Cleanup(r.Stop)
	return r
}

// TestRescuerRescuesExpiredLeases: once their leases expire on the clock,
// a dead worker's job with attempts left becomes retryable, one without
// fails, and one whose cancellation was requested is cancelled, each with
// the error saying whose lease expired and an EventRescued; a job whose
// lease holds stays running.
func TestRescuerRescuesExpiredLeases(t *testing.T) {
	e := newEnv(t)
	e.insert("dead", 3, 0)
	retry := e.claim("dead", "dead-worker", time.Minute)
	e.insert("dead", 1, 0)
	exhausted := e.claim("dead", "dead-worker", time.Minute)
	e.insert("dead", 3, 0)
	unwanted := e.claim("dead", "dead-worker", time.Minute)
	if _, err := e.client.Cancel(e.ctx, unwanted.ID); err != nil {
		t.Fatal(err)
	}
	alive := e.start("alive", 3) // leased for an hour

	rescued := make(chan []queue.Event, 10)
	e.rescuer(20*time.Millisecond, func() bool { return true }, rescued).Start(e.ctx)
	now := e.clock.Advance(2 * time.Minute)
	want := map[int64]queue.JobState{
		retry.ID: queue.StateRetryable, exhausted.ID: queue.StateFailed, unwanted.ID: queue.StateCancelled,
	}
	events := map[int64]queue.Event{}
	for len(events) < len(want) {
		for _, ev := range receive(t, rescued, "the rescued jobs' events") {
			events[ev.Job.ID] = ev
		}
	}
	const msg = "lease expired: the worker dead-worker stopped heartbeating (crashed or cut off)"
	for id, state := range want {
		ev := events[id]
		if ev.Kind != queue.EventRescued || ev.Job.State != state || !errors.Is(ev.Err, queue.ErrLeaseLostCause) || !ev.At.Equal(now) {
			t.Errorf("job %d: event %s, job %s, err %v at %v; want rescued, %s, lease lost at %v", id, ev.Kind, ev.Job.State, ev.Err, ev.At, state, now)
		}
		j := e.get(id)
		if j.State != state || j.Attempt != 1 || len(j.Errors) != 1 || j.Errors[0].Error != msg ||
			j.Errors[0].Attempt != 1 || !j.Errors[0].At.Equal(now) || j.LeaseExpiresAt != nil {
			t.Errorf("job %d: %s attempt %d errors %+v lease %v; want %s after attempt 1 with %q", id, j.State, j.Attempt, j.Errors, j.LeaseExpiresAt, state, msg)
		}
		if state.Final() {
			if j.FinalizedAt == nil || !j.FinalizedAt.Equal(now) {
				t.Errorf("job %d: finalized at %v, want %v", id, j.FinalizedAt, now)
			}
		} else if !j.RunAt.Equal(now) {
			t.Errorf("job %d: runs at %v, want %v", id, j.RunAt, now)
		}
	}
	if j := e.get(alive.ID); j.State != queue.StateRunning || j.AttemptedBy != "worker" {
		t.Errorf("job with a live lease: %s by %s, want running by worker", j.State, j.AttemptedBy)
	}
}

// TestRescuerOnlyWhileLeader: a rescuer that does not lead leaves expired
// leases alone; once it leads, Wake makes it rescue at once, long before
// its interval.
func TestRescuerOnlyWhileLeader(t *testing.T) {
	e := newEnv(t)
	e.insert("dead", 3, 0)
	j := e.claim("dead", "dead-worker", time.Minute)
	e.clock.Advance(2 * time.Minute)

	l := &leader{}
	rescued := make(chan []queue.Event, 10)
	r := e.rescuer(time.Hour, l.IsLeader, rescued)
	r.Start(e.ctx)
	r.Wake()
	l.waitTotal(t, 1, "the pass Wake asked for")
	if s := e.state(j.ID); s != queue.StateRunning {
		t.Fatalf("a rescuer that does not lead made a job %s", s)
	}

	l.set(true)
	r.Wake()
	events := receive(t, rescued, "the rescue Wake asked for")
	if len(events) != 1 || events[0].Job.ID != j.ID {
		t.Errorf("rescued %d events, want one of job %d", len(events), j.ID)
	}
	if s := e.state(j.ID); s != queue.StateRetryable {
		t.Errorf("rescued job is %s, want retryable", s)
	}
}
