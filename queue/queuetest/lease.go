package queuetest

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var leaseTests = []test{
	{"RescueAndFencing", testRescueAndFencing},
	{"RescueWithoutAttemptsLeft", testRescueExhausted},
}

var leaderTests = []test{
	{"OneLeaderAndTakeover", testLeaderTakeover},
	{"TakeoverAfterLeaseExpiry", testLeaderExpiry},
	{"StopDuringRenewal", testLeaderStopDuringRenewal},
}

const deadWorker = "dead-worker"

// claimAsDeadWorker claims the next available job of q as a worker that
// will never heartbeat or report back, with a lease of one minute.
func (h *harness) claimAsDeadWorker(q string, token int64) *queue.Job {
	h.Helper()
	now := h.clock.Now()
	jobs, err := h.driver.Claim(h.ctx, queue.ClaimParams{
		Queue: q, Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute), Token: token, ClientID: deadWorker,
	})
	if err != nil {
		h.Fatalf("claim: %v", err)
	}
	if len(jobs) != 1 {
		h.Fatalf("claim returned %d jobs, want 1", len(jobs))
	}
	j := jobs[0]
	if j.State != queue.StateRunning || j.LeaseToken != token || j.AttemptedBy != deadWorker ||
		j.LeaseExpiresAt == nil || !j.LeaseExpiresAt.Equal(now.Add(time.Minute)) {
		h.Fatalf("claimed job: %s token %d by %q lease %v; want running under the claim's lease", describe(j), j.LeaseToken, j.AttemptedBy, j.LeaseExpiresAt)
	}
	return j
}

// testRescueAndFencing: a job whose worker died is rescued once its lease
// expires and runs again on a live client; the dead attempt's writes are
// refused from then on.
func testRescueAndFencing(h *harness) {
	started := make(chan int, 2)
	release := make(chan struct{})
	w := queue.NewWorkers()
	w.HandleFunc("lease", func(ctx context.Context, j *queue.Job) error {
		started <- j.Attempt
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, fixed(3, time.Second))
	rec := &recorder{}
	spy := &spyDriver{Driver: h.driver}
	c := h.newClient(w, map[string]int{queue.DefaultQueue: 1}, withHooks(rec.record), withDriver(spy))
	j := h.insert(c, queue.InsertParams{Kind: "lease"})
	dead := h.claimAsDeadWorker(queue.DefaultQueue, 4242)
	if dead.ID != j.ID || dead.Attempt != 1 {
		h.Fatalf("dead worker claimed %s, want job %d attempt 1", describe(dead), j.ID)
	}
	stale := queue.Lease{ID: j.ID, Attempt: 1, Token: 4242}

	if err := c.Start(h.ctx); err != nil {
		h.Fatal(err)
	}
	// Once the leader has looked for expired leases, the job must still be
	// the dead worker's: its lease has not expired.
	eventually(h, waitTimeout, func() bool { return spy.expiredCalls.Load() > 0 }, "the leader to look for expired leases")
	if got := h.get(c, j.ID); got.State != queue.StateRunning || got.AttemptedBy != deadWorker {
		h.Errorf("job rescued before its lease expired: %s", describe(got))
	}

	h.clock.Advance(2 * time.Minute)
	if a := recv(h, started, "the rescued job to run again"); a != 2 {
		h.Errorf("rescued job ran as attempt %d, want 2", a)
	}
	ev := rec.wait(h, queue.EventRescued, j.ID)
	if ev.Job.State != queue.StateRetryable {
		h.Errorf("rescued event: job state %s, want retryable", ev.Job.State)
	}
	got := h.get(c, j.ID)
	switch {
	case got.State != queue.StateRunning || got.Attempt != 2 || got.AttemptedBy != c.ID():
		h.Errorf("after rescue: %s by %q, want running attempt 2 on the live client", describe(got), got.AttemptedBy)
	case len(got.Errors) != 1 || got.Errors[0].Attempt != 1 || !strings.Contains(got.Errors[0].Error, "lease expired"):
		h.Errorf("after rescue: errors %+v, want one for attempt 1 saying the lease expired", got.Errors)
	case got.LeaseToken == stale.Token:
		h.Errorf("new attempt kept the dead attempt's lease token")
	}

	// The dead worker wakes up: none of its writes may land.
	now := h.clock.Now()
	applied, err := h.driver.Finish(h.ctx, []queue.Outcome{
		{Lease: stale, State: queue.StateCompleted, At: now, Result: []byte(`{"stale":true}`)},
	})
	if err != nil || len(applied) != 1 || applied[0] {
		h.Errorf("stale Finish: applied %v err %v, want [false]", applied, err)
	}
	applied, err = h.driver.Finish(h.ctx, []queue.Outcome{
		{Lease: stale, State: queue.StateRetryable, At: now, RunAt: now, Error: &queue.AttemptError{Attempt: 1, At: now, Error: "stale"}},
	})
	if err != nil || len(applied) != 1 || applied[0] {
		h.Errorf("stale Finish (retryable): applied %v err %v, want [false]", applied, err)
	}
	// An expiry no heartbeat of the live client would set (it sets now +
	// leaseDuration, and may do so meanwhile).
	staleExpiry := now.Add(7 * leaseDuration)
	held, err := h.driver.ExtendLeases(h.ctx, []queue.Lease{stale}, staleExpiry)
	if err != nil || len(held) != 1 || held[0] {
		h.Errorf("stale ExtendLeases: held %v err %v, want [false]", held, err)
	}
	if err := h.driver.SetProgress(h.ctx, stale, 50, "stale"); !errors.Is(err, queue.ErrLeaseLost) {
		h.Errorf("stale SetProgress: %v, want ErrLeaseLost", err)
	}
	after := h.get(c, j.ID)
	if after.State != queue.StateRunning || after.Attempt != 2 || len(after.Errors) != 1 || after.Progress != 0 ||
		len(after.Result) != 0 || after.LeaseToken != got.LeaseToken || after.LeaseExpiresAt == nil ||
		after.LeaseExpiresAt.Equal(staleExpiry) || got.LeaseExpiresAt == nil || after.LeaseExpiresAt.Before(*got.LeaseExpiresAt) {
		h.Errorf("stale writes changed the job: %s progress %d result %s lease %v", describe(after), after.Progress, after.Result, after.LeaseExpiresAt)
	}

	close(release)
	done := h.waitState(c, j.ID, queue.StateCompleted)
	if done.Attempt != 2 || len(done.Result) != 0 {
		h.Errorf("completed: %s result %s", describe(done), done.Result)
	}
	applied, err = h.driver.Finish(h.ctx, []queue.Outcome{{Lease: stale, State: queue.StateFailed, At: now}})
	if err != nil || applied[0] {
		h.Errorf("stale Finish after completion: applied %v err %v, want [false]", applied, err)
	}
	if got := h.get(c, j.ID); got.State != queue.StateCompleted {
		h.Errorf("stale Finish changed a completed job to %s", got.State)
	}
}

// testRescueExhausted: a rescued job with no attempts left fails; one
// with attempts left becomes retryable, then available; one whose
// cancellation was requested is cancelled.
func testRescueExhausted(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("job", nop)
	rec := &recorder{}
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1}, withHooks(rec.record))
	last := h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Queue: "parked", Retry: &queue.RetryPolicy{MaxAttempts: 1}}})
	h.claimAsDeadWorker("parked", 1)
	more := h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Queue: "parked", Retry: &queue.RetryPolicy{MaxAttempts: 3}}})
	h.claimAsDeadWorker("parked", 2)
	unwanted := h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Queue: "parked", Retry: &queue.RetryPolicy{MaxAttempts: 3}}})
	h.claimAsDeadWorker("parked", 3)
	if _, err := c.Cancel(h.ctx, unwanted.ID); err != nil {
		h.Fatal(err)
	}

	now := h.clock.Advance(2 * time.Minute)
	got := h.waitState(c, last.ID, queue.StateFailed)
	if got.FinalizedAt == nil || !got.FinalizedAt.Equal(now) || len(got.Errors) != 1 || !strings.Contains(got.Errors[0].Error, "lease expired") {
		h.Errorf("rescued job without attempts left: %s finalized %v", describe(got), got.FinalizedAt)
	}
	// Nobody works the queue, so the promoted job stays available.
	got = h.waitState(c, more.ID, queue.StateAvailable)
	if got.Attempt != 1 || len(got.Errors) != 1 || got.LeaseExpiresAt != nil {
		h.Errorf("rescued job with attempts left: %s lease %v, want attempt 1, one error, no lease", describe(got), got.LeaseExpiresAt)
	}
	// A job whose cancellation was requested is not run again.
	if got := h.waitState(c, unwanted.ID, queue.StateCancelled); got.FinalizedAt == nil {
		h.Errorf("rescued job with a cancellation request: %s", describe(got))
	}
	if ev := rec.wait(h, queue.EventRescued, last.ID); ev.Job.State != queue.StateFailed {
		h.Errorf("rescued event of the exhausted job: state %s, want failed", ev.Job.State)
	}
}

// leaders returns the clients that believe they lead, failing the test if
// more than one does.
func leaders(h *harness, clients []*queue.Client) []*queue.Client {
	h.Helper()
	var out []*queue.Client
	for _, c := range clients {
		if c.IsLeader() {
			out = append(out, c)
		}
	}
	if len(out) > 1 {
		h.Fatalf("%d clients lead at once", len(out))
	}
	return out
}

// testLeaderTakeover: exactly one of several clients leads; when it stops,
// another takes over.
func testLeaderTakeover(h *harness) {
	var clients []*queue.Client
	for i := 0; i < 3; i++ {
		clients = append(clients, h.startClient(nil, nil))
	}
	for len(clients) > 0 {
		var leader *queue.Client
		eventually(h, waitTimeout, func() bool {
			l := leaders(h, clients)
			if len(l) == 1 {
				leader = l[0]
			}
			return leader != nil
		}, "one of %d clients to lead", len(clients))
		if err := leader.Stop(h.ctx); err != nil {
			h.Fatal(err)
		}
		if leader.IsLeader() {
			h.Errorf("stopped client still reports it leads")
		}
		clients = slicesDelete(clients, leader)
	}
}

// testLeaderExpiry: a leader that dies without resigning is replaced once
// its leadership lease expires, and not before.
func testLeaderExpiry(h *harness) {
	crashing := &spyDriver{Driver: h.driver, noResign: true}
	first := h.startClient(nil, nil, withDriver(crashing))
	eventually(h, waitTimeout, first.IsLeader, "the first client to lead")
	spy := &spyDriver{Driver: h.driver}
	second := h.startClient(nil, nil, withDriver(spy))
	if err := first.Stop(h.ctx); err != nil {
		h.Fatal(err)
	}
	// The clock has not moved, so the dead leader's lease still holds.
	waitCalls(h, &spy.leadCalls, 3, "TryLead")
	if second.IsLeader() {
		h.Fatalf("a client took over before the dead leader's lease expired")
	}
	h.clock.Advance(leaderTTL + time.Millisecond)
	eventually(h, waitTimeout, second.IsLeader, "the second client to take over")
}

// testLeaderStopDuringRenewal: a leader stopped while renewing its
// leadership still resigns, so another client takes over at once rather
// than after the lease expires.
func testLeaderStopDuringRenewal(h *harness) {
	spy := &spyDriver{Driver: h.driver, leadBlocked: make(chan struct{}, 1)}
	first := h.startClient(nil, nil, withDriver(spy))
	eventually(h, waitTimeout, first.IsLeader, "the first client to lead")
	spy.blockLead.Store(true)
	recv(h, spy.leadBlocked, "the leader to renew its leadership")
	second := h.startClient(nil, nil)
	if err := first.Stop(h.ctx); err != nil {
		h.Fatal(err)
	}
	if first.IsLeader() {
		h.Errorf("stopped client still reports it leads")
	}
	// The clock does not move: only a resignation lets the second lead.
	eventually(h, waitTimeout, second.IsLeader, "the second client to take over")
}

func slicesDelete(list []*queue.Client, c *queue.Client) []*queue.Client {
	out := list[:0]
	for _, x := range list {
		if x != c {
			out = append(out, x)
		}
	}
	return out
}
