package queuetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var cancelTests = []test{
	{"Waiting", testCancelWaiting},
	{"RunningSameClient", func(h *harness) { testCancelRunning(h, false) }},
	{"RunningOtherClient", func(h *harness) { testCancelRunning(h, true) }},
	{"RequestedBeforeFailure", testCancelBeforeFailure},
	{"RequestedBeforeShutdown", testCancelBeforeShutdown},
}

var timeoutTests = []test{
	{"PerKindAndPerJob", testTimeouts},
}

// testCancelWaiting: a job that is not running is cancelled at once; a
// finished one is returned unchanged.
func testCancelWaiting(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("job", nop)
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	now := h.clock.Now()

	scheduled := h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{RunIn: time.Hour}})
	available := h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Queue: "parked"}})
	for _, j := range []*queue.Job{scheduled, available} {
		got, err := c.Cancel(h.ctx, j.ID)
		if err != nil {
			h.Fatalf("cancel %s job: %v", j.State, err)
		}
		if got.State != queue.StateCancelled || got.FinalizedAt == nil || !got.FinalizedAt.Equal(now) {
			h.Errorf("cancel %s job returned %s finalized_at %v, want cancelled at %s", j.State, describe(got), got.FinalizedAt, now)
		}
		if stored := h.get(c, j.ID); stored.State != queue.StateCancelled {
			h.Errorf("cancelled %s job is stored as %s", j.State, stored.State)
		}
	}
	// Cancelling again changes nothing.
	if got, err := c.Cancel(h.ctx, scheduled.ID); err != nil || got.State != queue.StateCancelled {
		h.Errorf("second cancel: %s, %v", describe(got), err)
	}
	// A finished job stays as it is.
	done := h.insert(c, queue.InsertParams{Kind: "job"})
	h.waitState(c, done.ID, queue.StateCompleted)
	if got, err := c.Cancel(h.ctx, done.ID); err != nil || got.State != queue.StateCompleted {
		h.Errorf("cancel of a completed job: %s, %v; want it unchanged", describe(got), err)
	}
	_, err := c.Cancel(h.ctx, done.ID+1000)
	wantErr(h, "cancel of a missing job", err, queue.ErrNotFound, fmt.Sprintf("cancel job %d: job not found", done.ID+1000))
	// A cancelled scheduled job is not promoted when its time comes.
	h.clock.Advance(2 * time.Hour)
	marker := h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{RunIn: time.Minute}})
	h.clock.Advance(time.Minute)
	h.waitState(c, marker.ID, queue.StateCompleted)
	if got := h.get(c, scheduled.ID); got.State != queue.StateCancelled {
		h.Errorf("cancelled scheduled job became %s", got.State)
	}
}

// testCancelRunning: cancelling a running job cancels its handler's
// context and the job ends cancelled, whether the request comes from the
// client running it or from another client on the same database.
func testCancelRunning(h *harness, fromOther bool) {
	started := make(chan struct{}, 1)
	ctxErr := make(chan error, 1)
	w := queue.NewWorkers()
	w.HandleFunc("long", func(ctx context.Context, j *queue.Job) error {
		started <- struct{}{}
		<-ctx.Done()
		ctxErr <- ctx.Err()
		// Returning the cause, as many handlers do, must not make the
		// recorded error repeat itself.
		return context.Cause(ctx)
	}, fixed(5, time.Second))
	worker := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	canceller := worker
	if fromOther {
		// Another client, e.g. the HTTP server, with no queues of its own.
		canceller = h.startClient(w, nil)
	}
	j := h.insert(worker, queue.InsertParams{Kind: "long"})
	recv(h, started, "the handler to start")

	got, err := canceller.Cancel(h.ctx, j.ID)
	if err != nil {
		h.Fatalf("cancel running job: %v", err)
	}
	if got.State != queue.StateRunning || !got.CancelRequested {
		h.Errorf("cancel of a running job returned %s, want running with cancel_requested", describe(got))
	}
	if err := recv(h, ctxErr, "the handler's context to be cancelled"); err == nil {
		h.Errorf("handler context has no error after cancellation")
	}
	got = h.waitState(worker, j.ID, queue.StateCancelled)
	if got.Attempt != 1 || got.FinalizedAt == nil || len(got.Errors) == 0 ||
		!strings.Contains(got.Errors[len(got.Errors)-1].Error, "cancel") {
		h.Errorf("cancelled running job: %s, want attempt 1, finalized, with an error mentioning the cancellation", describe(got))
	}
	if n := len(got.Errors); n > 0 && strings.Count(got.Errors[n-1].Error, "cancelled") > 1 {
		h.Errorf("cancellation error says it twice: %q", got.Errors[n-1].Error)
	}
}

// testCancelBeforeFailure: a cancellation requested while the job runs
// wins over the attempt's failure even when the worker learns of the
// request only as the attempt ends: the job must not be retried.
func testCancelBeforeFailure(h *harness) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var calls atomic.Int32
	w := queue.NewWorkers()
	w.HandleFunc("fails", func(ctx context.Context, j *queue.Job) error {
		calls.Add(1)
		started <- struct{}{}
		<-release
		return errors.New("upstream error")
	}, fixed(5, time.Second))
	// The worker checks for cancellations too rarely to see this one.
	worker := h.startClient(w, map[string]int{queue.DefaultQueue: 1}, func(cfg *queue.Config) {
		cfg.CancelCheckInterval = time.Hour
	})
	other := h.startClient(w, nil)
	j := h.insert(worker, queue.InsertParams{Kind: "fails"})
	recv(h, started, "the handler to start")
	if got, err := other.Cancel(h.ctx, j.ID); err != nil || !got.CancelRequested {
		h.Fatalf("cancel: %s, %v", describe(got), err)
	}
	close(release)
	got := h.waitJob(worker, j.ID, "finished with its attempt", func(j *queue.Job) bool { return j.State != queue.StateRunning })
	if got.State != queue.StateCancelled {
		h.Errorf("job whose cancellation was requested before its attempt failed is %s, want cancelled: %s", got.State, describe(got))
	}
	// Had the job been made retryable, this promotion would run it again.
	marker := h.insert(worker, queue.InsertParams{Kind: "fails", Opts: queue.InsertOpts{Queue: "parked", RunIn: time.Second}})
	h.clock.Advance(time.Minute)
	h.waitState(worker, marker.ID, queue.StateAvailable)
	if n := calls.Load(); n != 1 {
		h.Errorf("handler ran %d times, want 1", n)
	}
}

// testCancelBeforeShutdown: a job whose cancellation was requested is
// cancelled, not handed back, when its client stops before noticing.
func testCancelBeforeShutdown(h *harness) {
	started := make(chan struct{}, 1)
	w := queue.NewWorkers()
	w.HandleFunc("long", func(ctx context.Context, j *queue.Job) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	rec := &recorder{}
	worker := h.startClient(w, map[string]int{queue.DefaultQueue: 1}, withHooks(rec.record), func(cfg *queue.Config) {
		cfg.CancelCheckInterval = time.Hour
	})
	other := h.startClient(w, nil)
	j := h.insert(worker, queue.InsertParams{Kind: "long"})
	recv(h, started, "the handler to start")
	if _, err := other.Cancel(h.ctx, j.ID); err != nil {
		h.Fatal(err)
	}
	now, stop := context.WithCancel(h.ctx)
	stop()
	if err := worker.Stop(now); err != nil {
		h.Fatal(err)
	}
	if got := h.get(other, j.ID); got.State != queue.StateCancelled || got.FinalizedAt == nil {
		h.Errorf("job cancelled before its client stopped: %s, want cancelled", describe(got))
	}
	if ev := rec.wait(h, queue.EventCancelled, j.ID); ev.Job.State != queue.StateCancelled {
		h.Errorf("cancelled event: job state %s", ev.Job.State)
	}
	if n := len(rec.all(queue.EventHandedBack, j.ID)); n != 0 {
		h.Errorf("%d handed_back events for a cancelled job", n)
	}
}

type deadlineSeen struct {
	ok        bool
	remaining time.Duration
}

// testTimeouts: a kind's timeout and a job's own timeout reach the
// handler as a context deadline, and the attempt error says it timed out.
// A job's negative timeout removes its kind's.
func testTimeouts(h *harness) {
	seen := map[string]chan deadlineSeen{"kind": make(chan deadlineSeen, 1), "job": make(chan deadlineSeen, 1), "none": make(chan deadlineSeen, 1)}
	handler := func(ctx context.Context, j *queue.Job) error {
		dl, ok := ctx.Deadline()
		seen[j.Kind] <- deadlineSeen{ok: ok, remaining: time.Until(dl)}
		if !ok {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}
	w := queue.NewWorkers()
	w.HandleFunc("kind", handler, queue.WithTimeout(50*time.Millisecond), noRetry)
	w.HandleFunc("job", handler, queue.WithTimeout(time.Hour), noRetry)
	w.HandleFunc("none", handler, queue.WithTimeout(50*time.Millisecond), noRetry)
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 3})

	byKind := h.insert(c, queue.InsertParams{Kind: "kind"})
	byJob := h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Timeout: 50 * time.Millisecond}})
	none := h.insert(c, queue.InsertParams{Kind: "none", Opts: queue.InsertOpts{Timeout: -1}})
	if got := h.get(c, byJob.ID); got.Timeout != 50*time.Millisecond {
		h.Errorf("stored job timeout = %s, want 50ms", got.Timeout)
	}

	for _, j := range []*queue.Job{byKind, byJob} {
		d := recv(h, seen[j.Kind], "the "+j.Kind+" handler")
		if !d.ok || d.remaining > 50*time.Millisecond {
			h.Errorf("%s timeout: handler deadline ok=%v remaining %s, want at most 50ms", j.Kind, d.ok, d.remaining)
		}
		got := h.waitState(c, j.ID, queue.StateFailed)
		if len(got.Errors) != 1 || !strings.Contains(got.Errors[0].Error, "attempt timed out after 50ms") {
			h.Errorf("%s timeout: errors %+v, want one saying the attempt timed out after 50ms", j.Kind, got.Errors)
		}
	}
	if d := recv(h, seen["none"], "the none handler"); d.ok {
		h.Errorf("job with a negative timeout got a deadline %s away from its kind's timeout", d.remaining)
	}
	h.waitState(c, none.ID, queue.StateCompleted)
}
