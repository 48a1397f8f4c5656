package queuetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var stateTests = []test{
	{"InsertAvailable", testInsertAvailable},
	{"ScheduledPromoted", testScheduledPromoted},
	{"RunningThenCompleted", testRunningThenCompleted},
	{"RetryableThenFailed", testRetryableThenFailed},
}

var retryTests = []test{
	{"PerKind", testRetryPerKind},
	{"PerJobOverridesKind", testRetryPerJob},
	{"Defaults", testRetryDefaults},
	{"ClientDefault", testRetryClientDefault},
	{"Unbounded", testRetryUnbounded},
	{"RetryAfter", testRetryAfter},
}

var outcomeTests = []test{
	{"Permanent", testPermanent},
	{"Snooze", testSnooze},
	{"CancelFromHandler", testHandlerCancel},
	{"Panic", testPanic},
}

// testInsertAvailable: an insert without a schedule is available at once,
// with the defaults and options stored as given.
func testInsertAvailable(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("plain", nop)
	w.HandleFunc("routed", nop, queue.WithQueue("special"))
	c := h.newClient(w, nil)
	now := h.clock.Now()

	j := h.insert(c, queue.InsertParams{Kind: "plain"})
	for _, got := range []*queue.Job{j, h.get(c, j.ID)} {
		switch {
		case got.State != queue.StateAvailable:
			h.Errorf("state = %s, want available", got.State)
		case got.Kind != "plain" || got.Queue != queue.DefaultQueue || got.Priority != 0:
			h.Errorf("kind/queue/priority = %s/%s/%d, want plain/%s/0", got.Kind, got.Queue, got.Priority, queue.DefaultQueue)
		case got.Attempt != 0 || got.MaxAttempts != queue.DefaultRetryPolicy.MaxAttempts:
			h.Errorf("attempt %d/%d, want 0/%d", got.Attempt, got.MaxAttempts, queue.DefaultRetryPolicy.MaxAttempts)
		case !got.RunAt.Equal(now) || !got.CreatedAt.Equal(now):
			h.Errorf("run_at %s created_at %s, want both %s", got.RunAt, got.CreatedAt, now)
		case !jsonEqual(got.Args, []byte("{}")):
			h.Errorf("args = %s, want {} for nil args", got.Args)
		case got.AttemptedAt != nil || got.FinalizedAt != nil || got.LeaseExpiresAt != nil || len(got.Errors) != 0:
			h.Errorf("a new job has attempt, finalize, lease or error data: %s", describe(got))
		}
	}

	args := []byte(`{"id": 7, "tags": ["a", "b"]}`)
	meta := []byte(`{"trace": "abc"}`)
	j = h.insert(c, queue.InsertParams{Kind: "plain", Args: args,
		Opts: queue.InsertOpts{Queue: "other", Priority: -7, Metadata: meta, Timeout: 90 * time.Second}})
	got := h.get(c, j.ID)
	if got.Queue != "other" || got.Priority != -7 || !jsonEqual(got.Args, args) || !jsonEqual(got.Metadata, meta) || got.Timeout != 90*time.Second {
		h.Errorf("stored options differ: queue %s priority %d args %s metadata %s timeout %s",
			got.Queue, got.Priority, got.Args, got.Metadata, got.Timeout)
	}

	// A kind's queue is the default; the job's own queue wins.
	if j := h.insert(c, queue.InsertParams{Kind: "routed"}); j.Queue != "special" {
		h.Errorf("kind with WithQueue(special): job queue = %s", j.Queue)
	}
	if j := h.insert(c, queue.InsertParams{Kind: "routed", Opts: queue.InsertOpts{Queue: "mine"}}); j.Queue != "mine" {
		h.Errorf("explicit queue: job queue = %s, want mine", j.Queue)
	}
}

// testScheduledPromoted: RunAt and RunIn make a job scheduled; the leader
// makes it available once the clock passes its RunAt, and not before.
func testScheduledPromoted(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("later", nop)
	// The client leads but works another queue, so promoted jobs stay
	// available for the test to see.
	c := h.startClient(w, map[string]int{"elsewhere": 1})
	now := h.clock.Now()

	at := h.insert(c, queue.InsertParams{Kind: "later", Opts: queue.InsertOpts{RunAt: now.Add(time.Hour)}})
	in := h.insert(c, queue.InsertParams{Kind: "later", Opts: queue.InsertOpts{RunIn: 30 * time.Minute}})
	past := h.insert(c, queue.InsertParams{Kind: "later", Opts: queue.InsertOpts{RunAt: now.Add(-time.Minute)}})
	if at.State != queue.StateScheduled || !at.RunAt.Equal(now.Add(time.Hour)) {
		h.Errorf("RunAt job: %s, want scheduled at %s", describe(at), now.Add(time.Hour))
	}
	if in.State != queue.StateScheduled || !in.RunAt.Equal(now.Add(30*time.Minute)) {
		h.Errorf("RunIn job: %s, want scheduled at %s", describe(in), now.Add(30*time.Minute))
	}
	if past.State != queue.StateAvailable {
		h.Errorf("job with RunAt in the past: %s, want available", describe(past))
	}

	h.clock.Advance(30 * time.Minute)
	h.waitState(c, in.ID, queue.StateAvailable)
	// The promotion that moved the due job looked at both.
	if j := h.get(c, at.ID); j.State != queue.StateScheduled {
		h.Errorf("job due in 30 more minutes was promoted early: %s", describe(j))
	}
	h.clock.Advance(30 * time.Minute)
	h.waitState(c, at.ID, queue.StateAvailable)
}

// testRunningThenCompleted: a claimed job is running under this client's
// lease, then completed with its result.
func testRunningThenCompleted(h *harness) {
	started := make(chan int64, 1)
	release := make(chan struct{})
	w := queue.NewWorkers()
	w.HandleFunc("work", func(ctx context.Context, j *queue.Job) error {
		started <- j.ID
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return j.SetResult(map[string]any{"answer": 42})
	})
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 2})
	now := h.clock.Now()
	j := h.insert(c, queue.InsertParams{Kind: "work"})
	if id := recv(h, started, "the handler to start"); id != j.ID {
		h.Fatalf("handler got job %d, want %d", id, j.ID)
	}

	got := h.get(c, j.ID)
	switch {
	case got.State != queue.StateRunning || got.Attempt != 1:
		h.Errorf("while the handler runs: %s, want running attempt 1", describe(got))
	case got.AttemptedBy != c.ID():
		h.Errorf("attempted_by = %q, want %q", got.AttemptedBy, c.ID())
	case got.AttemptedAt == nil || !got.AttemptedAt.Equal(now):
		h.Errorf("attempted_at = %v, want %s", got.AttemptedAt, now)
	case got.LeaseExpiresAt == nil || !got.LeaseExpiresAt.Equal(now.Add(leaseDuration)):
		h.Errorf("lease_expires_at = %v, want %s", got.LeaseExpiresAt, now.Add(leaseDuration))
	case got.FinalizedAt != nil:
		h.Errorf("running job has finalized_at %v", got.FinalizedAt)
	}

	close(release)
	got = h.waitState(c, j.ID, queue.StateCompleted)
	switch {
	case !jsonEqual(got.Result, []byte(`{"answer":42}`)):
		h.Errorf("result = %s, want {\"answer\":42}", got.Result)
	case got.FinalizedAt == nil || !got.FinalizedAt.Equal(now):
		h.Errorf("finalized_at = %v, want %s", got.FinalizedAt, now)
	case got.Attempt != 1 || got.Progress != 100 || len(got.Errors) != 0:
		h.Errorf("completed job: %s progress %d, want attempt 1, progress 100, no errors", describe(got), got.Progress)
	case got.LeaseExpiresAt != nil:
		h.Errorf("completed job still has a lease until %v", got.LeaseExpiresAt)
	}
}

// testRetryableThenFailed: a failed attempt makes the job retryable at
// now + the policy's delay; the last attempt fails it for good.
func testRetryableThenFailed(h *harness) {
	var calls atomic.Int32
	w := queue.NewWorkers()
	w.HandleFunc("flaky", func(ctx context.Context, j *queue.Job) error {
		calls.Add(1)
		return fmt.Errorf("boom %d", j.Attempt)
	}, fixed(2, time.Minute))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	j := h.insert(c, queue.InsertParams{Kind: "flaky"})
	if j.MaxAttempts != 2 {
		h.Errorf("max_attempts = %d, want the kind's 2", j.MaxAttempts)
	}

	got := h.waitState(c, j.ID, queue.StateRetryable)
	now := h.clock.Now()
	switch {
	case got.Attempt != 1 || !got.RunAt.Equal(now.Add(time.Minute)):
		h.Errorf("after one failure: %s, want attempt 1 run_at %s", describe(got), now.Add(time.Minute))
	case len(got.Errors) != 1 || got.Errors[0].Attempt != 1 || !strings.Contains(got.Errors[0].Error, "boom 1"):
		h.Errorf("errors = %+v, want one for attempt 1 saying boom 1", got.Errors)
	case got.FinalizedAt != nil:
		h.Errorf("retryable job has finalized_at %v", got.FinalizedAt)
	}

	h.clock.Advance(time.Minute)
	got = h.waitState(c, j.ID, queue.StateFailed)
	switch {
	case got.Attempt != 2 || len(got.Errors) != 2 || !strings.Contains(got.Errors[1].Error, "boom 2"):
		h.Errorf("failed job: %s, want attempt 2 with two errors", describe(got))
	case got.FinalizedAt == nil || !got.FinalizedAt.Equal(h.clock.Now()):
		h.Errorf("finalized_at = %v, want %s", got.FinalizedAt, h.clock.Now())
	}
	if n := calls.Load(); n != 2 {
		h.Errorf("handler ran %d times, want 2", n)
	}
}

// failUntilFinal runs attempts of a job that always fails, checking the
// delay before each retry, until it fails for good.
func (h *harness) failUntilFinal(c *queue.Client, id int64, delays []time.Duration) {
	h.Helper()
	for i, d := range delays {
		attempt := i + 1
		got := h.waitJob(c, id, fmt.Sprintf("retryable after attempt %d", attempt), func(j *queue.Job) bool {
			return j.State == queue.StateRetryable && j.Attempt == attempt
		})
		if want := h.clock.Now().Add(d); !got.RunAt.Equal(want) {
			h.Fatalf("after attempt %d: run_at = %s, want now + %s = %s", attempt, got.RunAt, d, want)
		}
		h.clock.Advance(d)
	}
	got := h.waitState(c, id, queue.StateFailed)
	if got.Attempt != len(delays)+1 {
		h.Errorf("failed after %d attempts, want %d", got.Attempt, len(delays)+1)
	}
}

var errAlways = errors.New("always fails")

func alwaysFail(context.Context, *queue.Job) error { return errAlways }

// testRetryAfter: a RetryAfter longer than the policy's delay pushes the
// next attempt back to it, a shorter one leaves the policy's delay, and
// both use an attempt, so the job still fails when they run out.
func testRetryAfter(h *harness) {
	var calls atomic.Int32
	w := queue.NewWorkers()
	w.HandleFunc("busy", func(context.Context, *queue.Job) error {
		if calls.Add(1) == 1 {
			return queue.RetryAfter(errors.New("429 too many requests"), time.Minute)
		}
		return queue.RetryAfter(errors.New("503 unavailable"), time.Second)
	}, fixed(3, 10*time.Second))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	j := h.insert(c, queue.InsertParams{Kind: "busy"})
	h.failUntilFinal(c, j.ID, []time.Duration{time.Minute, 10 * time.Second})
	if got := h.get(c, j.ID); len(got.Errors) != 3 || got.Errors[0].Error != "429 too many requests" {
		h.Errorf("errors after RetryAfter: %+v, want three with the handler's message", got.Errors)
	}
}

// testRetryUnbounded: MaxAttempts of math.MaxInt, the natural way to say
// "retry forever", retries; it must not wrap around in storage into a
// limit the first failure exceeds.
func testRetryUnbounded(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("forever", alwaysFail, queue.WithRetry(queue.RetryPolicy{MaxAttempts: math.MaxInt, Jitter: -1}))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	j := h.insert(c, queue.InsertParams{Kind: "forever"})
	got := h.waitJob(c, j.ID, "first attempt to end", func(j *queue.Job) bool { return j.Attempt == 1 && j.State != queue.StateRunning })
	if got.State != queue.StateRetryable {
		h.Fatalf("after one failure: state %s (max_attempts %d), want retryable", got.State, got.MaxAttempts)
	}
	if got.MaxAttempts < math.MaxInt32 {
		h.Errorf("max_attempts = %d, want at least %d", got.MaxAttempts, math.MaxInt32)
	}
}

// testRetryPerKind: a kind's exponential policy doubles the delay from
// BaseDelay up to MaxDelay.
func testRetryPerKind(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("exp", alwaysFail, queue.WithRetry(queue.RetryPolicy{
		MaxAttempts: 4, Backoff: queue.BackoffExponential, BaseDelay: 10 * time.Second, MaxDelay: 25 * time.Second, Jitter: -1,
	}))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	j := h.insert(c, queue.InsertParams{Kind: "exp"})
	if j.MaxAttempts != 4 {
		h.Errorf("max_attempts = %d, want 4", j.MaxAttempts)
	}
	h.failUntilFinal(c, j.ID, []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second})
}

// testRetryPerJob: InsertOpts.Retry overrides the kind's policy field by
// field; the fields it leaves zero come from the kind.
func testRetryPerJob(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("exp", alwaysFail, queue.WithRetry(queue.RetryPolicy{
		MaxAttempts: 5, Backoff: queue.BackoffExponential, BaseDelay: 10 * time.Second, Jitter: -1,
	}))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})

	// MaxAttempts 1 from the job: fails at its first error.
	once := h.insert(c, queue.InsertParams{Kind: "exp", Opts: queue.InsertOpts{Retry: &queue.RetryPolicy{MaxAttempts: 1}}})
	if once.MaxAttempts != 1 {
		h.Errorf("max_attempts = %d, want the job's 1", once.MaxAttempts)
	}
	if got := h.waitState(c, once.ID, queue.StateFailed); got.Attempt != 1 {
		h.Errorf("job with MaxAttempts 1: %s", describe(got))
	}

	// Fixed 7s from the job, no jitter from the kind.
	j := h.insert(c, queue.InsertParams{Kind: "exp", Opts: queue.InsertOpts{
		Retry: &queue.RetryPolicy{MaxAttempts: 3, Backoff: queue.BackoffFixed, BaseDelay: 7 * time.Second},
	}})
	if j.MaxAttempts != 3 || j.Retry == nil {
		h.Errorf("job with its own policy: max_attempts %d retry %+v", j.MaxAttempts, j.Retry)
	}
	if got := h.get(c, j.ID); got.Retry == nil || got.Retry.Backoff != queue.BackoffFixed || got.Retry.BaseDelay != 7*time.Second {
		h.Errorf("stored retry policy = %+v, want fixed 7s", got.Retry)
	}
	h.failUntilFinal(c, j.ID, []time.Duration{7 * time.Second, 7 * time.Second})
}

// testRetryDefaults: a kind without a policy gets DefaultRetryPolicy, with
// its jitter drawn from Config.Rand.
func testRetryDefaults(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("plain", alwaysFail)
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1}, func(cfg *queue.Config) {
		cfg.Rand = func() float64 { return 0.5 }
	})
	j := h.insert(c, queue.InsertParams{Kind: "plain"})
	if j.MaxAttempts != queue.DefaultRetryPolicy.MaxAttempts {
		h.Errorf("max_attempts = %d, want %d", j.MaxAttempts, queue.DefaultRetryPolicy.MaxAttempts)
	}
	got := h.waitState(c, j.ID, queue.StateRetryable)
	// 2s base delay less 20% jitter × 0.5.
	want := h.clock.Now().Add(1800 * time.Millisecond)
	if !got.RunAt.Equal(want) {
		h.Errorf("default policy: run_at = now + %s, want now + 1.8s", got.RunAt.Sub(h.clock.Now()))
	}
}

// testRetryClientDefault: Config.DefaultRetry replaces the default policy
// of kinds that set none.
func testRetryClientDefault(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("plain", alwaysFail)
	w.HandleFunc("own", alwaysFail, queue.WithRetry(queue.RetryPolicy{MaxAttempts: 2}))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1}, func(cfg *queue.Config) {
		cfg.DefaultRetry = &queue.RetryPolicy{MaxAttempts: 3, Backoff: queue.BackoffFixed, BaseDelay: 5 * time.Second, Jitter: -1}
	})
	own := h.insert(c, queue.InsertParams{Kind: "own"})
	if own.MaxAttempts != 2 {
		h.Errorf("kind policy over client default: max_attempts %d, want 2", own.MaxAttempts)
	}
	// The kind's delays come from the client default too.
	got := h.waitState(c, own.ID, queue.StateRetryable)
	if want := h.clock.Now().Add(5 * time.Second); !got.RunAt.Equal(want) {
		h.Errorf("kind without delays: run_at = now + %s, want the client default's 5s", got.RunAt.Sub(h.clock.Now()))
	}
	j := h.insert(c, queue.InsertParams{Kind: "plain", Opts: queue.InsertOpts{Queue: "parked"}})
	if j.MaxAttempts != 3 {
		h.Errorf("client default: max_attempts %d, want 3", j.MaxAttempts)
	}
}

// testPermanent: a permanent error fails the job at once.
func testPermanent(h *harness) {
	var calls atomic.Int32
	w := queue.NewWorkers()
	w.HandleFunc("bad", func(context.Context, *queue.Job) error {
		calls.Add(1)
		return queue.Permanent(errors.New("input is unusable"))
	}, fixed(5, time.Second))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	j := h.insert(c, queue.InsertParams{Kind: "bad"})
	got := h.waitState(c, j.ID, queue.StateFailed)
	if got.Attempt != 1 || len(got.Errors) != 1 || !strings.Contains(got.Errors[0].Error, "input is unusable") {
		h.Errorf("permanent failure: %s, want failed at attempt 1 with the error", describe(got))
	}
	if got.FinalizedAt == nil {
		h.Errorf("failed job has no finalized_at")
	}
	if n := calls.Load(); n != 1 {
		h.Errorf("handler ran %d times, want 1", n)
	}
}

// testSnooze: Snooze schedules the job at now+d without using an attempt.
func testSnooze(h *harness) {
	var calls atomic.Int32
	w := queue.NewWorkers()
	// One attempt only: the snoozes must not use it up.
	w.HandleFunc("nap", func(context.Context, *queue.Job) error {
		if calls.Add(1) <= 2 {
			return queue.Snooze(5 * time.Minute)
		}
		return nil
	}, noRetry)
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	j := h.insert(c, queue.InsertParams{Kind: "nap"})
	for i := 1; i <= 2; i++ {
		// The job is read before calls is loaded, so a read of the
		// previous snooze can meet the new call count: match the run
		// time this snooze sets too.
		due := h.clock.Now().Add(5 * time.Minute)
		got := h.waitJob(c, j.ID, fmt.Sprintf("snoozed %d times", i), func(j *queue.Job) bool {
			return j.State == queue.StateScheduled && calls.Load() == int32(i) && j.RunAt.Equal(due)
		})
		if want := h.clock.Now().Add(5 * time.Minute); got.Attempt != 0 || !got.RunAt.Equal(want) || len(got.Errors) != 0 {
			h.Fatalf("after snooze %d: %s, want scheduled at %s with attempt 0 and no errors", i, describe(got), want)
		}
		h.clock.Advance(5 * time.Minute)
	}
	got := h.waitState(c, j.ID, queue.StateCompleted)
	if got.Attempt != 1 {
		h.Errorf("completed after two snoozes with attempt %d, want 1", got.Attempt)
	}
}

// testHandlerCancel: Cancel from a handler cancels the job without retry.
func testHandlerCancel(h *harness) {
	var calls atomic.Int32
	w := queue.NewWorkers()
	w.HandleFunc("moot", func(context.Context, *queue.Job) error {
		calls.Add(1)
		return queue.Cancel(errors.New("order was withdrawn"))
	}, fixed(5, time.Second))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	j := h.insert(c, queue.InsertParams{Kind: "moot"})
	got := h.waitState(c, j.ID, queue.StateCancelled)
	if got.FinalizedAt == nil || len(got.Errors) != 1 || !strings.Contains(got.Errors[0].Error, "order was withdrawn") {
		h.Errorf("cancelled by handler: %s, want finalized with the reason recorded", describe(got))
	}
	if n := calls.Load(); n != 1 {
		h.Errorf("handler ran %d times, want 1", n)
	}
}

// testPanic: a panic is recorded with its stack and retried.
func testPanic(h *harness) {
	var calls atomic.Int32
	w := queue.NewWorkers()
	w.HandleFunc("fragile", func(context.Context, *queue.Job) error {
		if calls.Add(1) == 1 {
			panic("kaboom")
		}
		return nil
	}, fixed(2, time.Second))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	j := h.insert(c, queue.InsertParams{Kind: "fragile"})
	got := h.waitState(c, j.ID, queue.StateRetryable)
	if len(got.Errors) != 1 {
		h.Fatalf("after a panic: errors %+v, want one", got.Errors)
	}
	if e := got.Errors[0]; !e.Panic || e.Stack == "" || !strings.Contains(e.Error, "kaboom") || e.Attempt != 1 {
		h.Errorf("panic error = %+v, want Panic, a stack and the value", e)
	}
	h.clock.Advance(time.Second)
	if got := h.waitState(c, j.ID, queue.StateCompleted); got.Attempt != 2 {
		h.Errorf("completed at attempt %d, want 2", got.Attempt)
	}
}
