package queuetest

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var eventTests = []test{
	{"EveryTransition", testEvents},
}

var shutdownTests = []test{
	{"GracefulStop", testGracefulStop},
	{"StopBeforeStart", testStopBeforeStart},
}

// testEvents: subscribers see every transition, with the job it concerns
// in the state it moved to.
func testEvents(h *harness) {
	var flakyCalls, napCalls atomic.Int32
	blocking := make(chan struct{}, 1)
	w := queue.NewWorkers()
	w.HandleFunc("ok", nop)
	w.HandleFunc("fatal", func(context.Context, *queue.Job) error { return queue.Permanent(errors.New("fatal")) })
	w.HandleFunc("flaky", func(context.Context, *queue.Job) error {
		if flakyCalls.Add(1) == 1 {
			return errors.New("flaky")
		}
		return nil
	}, fixed(3, time.Second))
	w.HandleFunc("nap", func(context.Context, *queue.Job) error {
		if napCalls.Add(1) == 1 {
			return queue.Snooze(time.Second)
		}
		return nil
	})
	w.HandleFunc("block", func(ctx context.Context, j *queue.Job) error {
		blocking <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	rec := &recorder{}
	c := h.newClient(w, map[string]int{queue.DefaultQueue: 4})
	unsubscribe := c.Subscribe(rec.record)
	defer unsubscribe()
	if err := c.Start(h.ctx); err != nil {
		h.Fatal(err)
	}
	expect := func(kind queue.EventKind, j *queue.Job, state queue.JobState, wantErr bool) {
		h.Helper()
		ev := rec.wait(h, kind, j.ID)
		if ev.Job.State != state {
			h.Errorf("%s event of job %d (%s): job state %s, want %s", kind, j.ID, j.Kind, ev.Job.State, state)
		}
		if (ev.Err != nil) != wantErr {
			h.Errorf("%s event of job %d (%s): err %v, want error %v", kind, j.ID, j.Kind, ev.Err, wantErr)
		}
		if ev.At.IsZero() {
			h.Errorf("%s event of job %d has no time", kind, j.ID)
		}
	}

	ok := h.insert(c, queue.InsertParams{Kind: "ok"})
	expect(queue.EventInserted, ok, queue.StateAvailable, false)
	expect(queue.EventStarted, ok, queue.StateRunning, false)
	expect(queue.EventCompleted, ok, queue.StateCompleted, false)

	fatal := h.insert(c, queue.InsertParams{Kind: "fatal"})
	expect(queue.EventFailed, fatal, queue.StateFailed, true)

	flaky := h.insert(c, queue.InsertParams{Kind: "flaky"})
	expect(queue.EventRetried, flaky, queue.StateRetryable, true)

	nap := h.insert(c, queue.InsertParams{Kind: "nap"})
	expect(queue.EventSnoozed, nap, queue.StateScheduled, false)

	waiting := h.insert(c, queue.InsertParams{Kind: "ok", Opts: queue.InsertOpts{RunIn: time.Hour}})
	expect(queue.EventInserted, waiting, queue.StateScheduled, false)
	if _, err := c.Cancel(h.ctx, waiting.ID); err != nil {
		h.Fatal(err)
	}
	expect(queue.EventCancelled, waiting, queue.StateCancelled, true)

	running := h.insert(c, queue.InsertParams{Kind: "block"})
	recv(h, blocking, "the blocking handler to start")
	if _, err := c.Cancel(h.ctx, running.ID); err != nil {
		h.Fatal(err)
	}
	expect(queue.EventCancelled, running, queue.StateCancelled, true)

	lost := h.insert(c, queue.InsertParams{Kind: "ok", Opts: queue.InsertOpts{Queue: "parked"}})
	h.claimAsDeadWorker("parked", 9)
	h.clock.Advance(2 * time.Minute)
	expect(queue.EventRescued, lost, queue.StateRetryable, true)
	// The clock moved past the retry and the snooze too.
	expect(queue.EventCompleted, flaky, queue.StateCompleted, false)
	expect(queue.EventCompleted, nap, queue.StateCompleted, false)

	// A second client hands its running job back when it stops.
	hbRec := &recorder{}
	other := h.startClient(w, map[string]int{"other": 1}, withHooks(hbRec.record))
	handed := h.insert(other, queue.InsertParams{Kind: "block", Opts: queue.InsertOpts{Queue: "other"}})
	recv(h, blocking, "the blocking handler to start on the second client")
	stopNow, cancel := context.WithCancel(h.ctx)
	cancel()
	if err := other.Stop(stopNow); err != nil {
		h.Fatal(err)
	}
	if ev := hbRec.wait(h, queue.EventHandedBack, handed.ID); ev.Job.State != queue.StateAvailable {
		h.Errorf("handed_back event: job state %s, want available", ev.Job.State)
	}

	// Each transition was reported once.
	for _, j := range []*queue.Job{ok, fatal, flaky, nap, waiting, running, lost} {
		if n := len(rec.all(queue.EventInserted, j.ID)); n != 1 {
			h.Errorf("job %d (%s): %d inserted events, want 1", j.ID, j.Kind, n)
		}
	}
	if n := len(rec.all(queue.EventStarted, flaky.ID)); n != 2 {
		h.Errorf("flaky job: %d started events, want 2", n)
	}
	for _, e := range []struct {
		kind queue.EventKind
		j    *queue.Job
	}{{queue.EventCompleted, ok}, {queue.EventFailed, fatal}, {queue.EventCancelled, running}, {queue.EventCancelled, waiting}} {
		if n := len(rec.all(e.kind, e.j.ID)); n != 1 {
			h.Errorf("job %d: %d %s events, want 1", e.j.ID, n, e.kind)
		}
	}
	// After unsubscribing, nothing more arrives.
	unsubscribe()
	late := h.insert(c, queue.InsertParams{Kind: "ok", Opts: queue.InsertOpts{Queue: "parked"}})
	if n := len(rec.all(queue.EventInserted, late.ID)); n != 0 {
		h.Errorf("unsubscribed hook got %d events", n)
	}
}

// testGracefulStop: Stop lets a job that finishes in time complete, then
// cancels the rest and hands them back at once without using an attempt.
func testGracefulStop(h *harness) {
	stuckStarted := make(chan struct{}, 1)
	stuckErr := make(chan error, 1)
	quickStarted := make(chan struct{}, 1)
	quickRelease := make(chan struct{})
	var stuckCalls atomic.Int32
	w := queue.NewWorkers()
	w.HandleFunc("stuck", func(ctx context.Context, j *queue.Job) error {
		if stuckCalls.Add(1) > 1 {
			return nil // a later run, on another client
		}
		stuckStarted <- struct{}{}
		<-ctx.Done()
		stuckErr <- ctx.Err()
		return ctx.Err()
	})
	w.HandleFunc("quick", func(ctx context.Context, j *queue.Job) error {
		quickStarted <- struct{}{}
		select {
		case <-quickRelease:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	rec := &recorder{}
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 2}, withHooks(rec.record))
	stuck := h.insert(c, queue.InsertParams{Kind: "stuck"})
	quick := h.insert(c, queue.InsertParams{Kind: "quick"})
	recv(h, stuckStarted, "the stuck handler to start")
	recv(h, quickStarted, "the quick handler to start")

	stopCtx, stopDeadline := context.WithCancel(context.Background())
	defer stopDeadline()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(stopCtx) }()
	close(quickRelease)
	h.waitState(c, quick.ID, queue.StateCompleted)
	select {
	case err := <-stopped:
		h.Fatalf("Stop returned (%v) while a handler ran and its deadline had not passed", err)
	default:
	}
	if got := h.get(c, stuck.ID); got.State != queue.StateRunning {
		h.Errorf("job running under Stop: %s", describe(got))
	}

	stopDeadline()
	if err := recv(h, stopped, "Stop to return after its deadline"); err != nil {
		h.Errorf("Stop: %v", err)
	}
	if err := recv(h, stuckErr, "the stuck handler's context to be cancelled"); err == nil {
		h.Errorf("stuck handler's context has no error")
	}
	got := h.get(c, stuck.ID)
	switch {
	case got.State != queue.StateAvailable || got.Attempt != 0:
		h.Errorf("job handed back at shutdown: %s, want available with attempt 0", describe(got))
	case got.LeaseExpiresAt != nil || got.FinalizedAt != nil || len(got.Errors) != 0:
		h.Errorf("handed back job keeps a lease, a final time or an error: %s lease %v", describe(got), got.LeaseExpiresAt)
	case got.RunAt.After(h.clock.Now()):
		h.Errorf("handed back job runs at %s, after now %s", got.RunAt, h.clock.Now())
	}
	if ev := rec.wait(h, queue.EventHandedBack, stuck.ID); ev.Job.State != queue.StateAvailable {
		h.Errorf("handed_back event: state %s", ev.Job.State)
	}

	// Stop is idempotent, and a stopped client does not start again.
	if err := c.Stop(context.Background()); err != nil {
		h.Errorf("second Stop: %v", err)
	}
	if err := c.Start(h.ctx); !errors.Is(err, queue.ErrStopped) {
		h.Errorf("Start after Stop: %v, want ErrStopped", err)
	}
	// Another client takes the job at once: no lease to wait for.
	next := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	if got := h.waitState(next, stuck.ID, queue.StateCompleted); got.Attempt != 1 || got.AttemptedBy != next.ID() {
		h.Errorf("handed back job: %s by %q, want attempt 1 on the next client", describe(got), got.AttemptedBy)
	}
}

// testStopBeforeStart: stopping a client that never started is harmless.
func testStopBeforeStart(h *harness) {
	c := h.newClient(nil, map[string]int{queue.DefaultQueue: 1})
	for i := 0; i < 2; i++ {
		if err := c.Stop(h.ctx); err != nil {
			h.Errorf("Stop %d: %v", i+1, err)
		}
	}
	if err := c.Start(h.ctx); !errors.Is(err, queue.ErrStopped) {
		h.Errorf("Start after Stop: %v, want ErrStopped", err)
	}
}
