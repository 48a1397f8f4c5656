package queuetest

import (
	"slices"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var driverTests = []test{
	{"ClaimFinishPromote", testDriverClaimFinish},
	{"RescueGuard", testDriverRescueGuard},
	{"Leadership", testDriverLeadership},
}

// testDriverClaimFinish exercises Claim, Finish, NextRunAt, Promote and
// CancelRequested directly, with no client running.
func testDriverClaimFinish(h *harness) {
	d := h.driver
	w := queue.NewWorkers()
	w.HandleFunc("job", nop)
	c := h.newClient(w, nil) // only builds rows; never started
	now := h.clock.Now()
	var ids []int64
	for _, p := range []int{0, 10, 0, 5} {
		ids = append(ids, h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Queue: "dq", Priority: p}}).ID)
	}
	other := h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Queue: "other"}})

	claim := func(limit int, token int64) []*queue.Job {
		h.Helper()
		jobs, err := d.Claim(h.ctx, queue.ClaimParams{Queue: "dq", Limit: limit, Now: now, LeaseUntil: now.Add(time.Minute), Token: token, ClientID: "w1"})
		if err != nil {
			h.Fatalf("claim: %v", err)
		}
		return jobs
	}
	jobIDs := func(jobs []*queue.Job) []int64 {
		out := make([]int64, len(jobs))
		for i, j := range jobs {
			out[i] = j.ID
		}
		return out
	}
	first := claim(2, 11)
	if got, want := jobIDs(first), []int64{ids[1], ids[3]}; !slices.Equal(got, want) {
		h.Fatalf("first claim: %v, want %v (highest priority first)", got, want)
	}
	for _, j := range first {
		if j.State != queue.StateRunning || j.Attempt != 1 || j.LeaseToken != 11 || j.AttemptedBy != "w1" ||
			j.AttemptedAt == nil || !j.AttemptedAt.Equal(now) || j.LeaseExpiresAt == nil || !j.LeaseExpiresAt.Equal(now.Add(time.Minute)) {
			h.Errorf("claimed job: %s token %d by %q at %v lease %v", describe(j), j.LeaseToken, j.AttemptedBy, j.AttemptedAt, j.LeaseExpiresAt)
		}
	}
	second := claim(10, 12)
	if got, want := jobIDs(second), []int64{ids[0], ids[2]}; !slices.Equal(got, want) {
		h.Fatalf("second claim: %v, want %v (equal priority in insertion order, other queues untouched)", got, want)
	}
	if more := claim(10, 13); len(more) != 0 {
		h.Errorf("claim of an empty queue returned %d jobs", len(more))
	}
	if got := h.get(c, other.ID); got.State != queue.StateAvailable {
		h.Errorf("job of another queue was claimed: %s", describe(got))
	}

	lease := func(j *queue.Job) queue.Lease { return queue.Lease{ID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken} }
	done, retry, snooze, back := first[0], first[1], second[0], second[1]
	outcomes := []queue.Outcome{
		{Lease: lease(done), State: queue.StateCompleted, At: now, Result: []byte(`{"ok":1}`)},
		{Lease: lease(retry), State: queue.StateRetryable, At: now, RunAt: now.Add(time.Minute),
			Error: &queue.AttemptError{Attempt: 1, At: now, Error: "try again"}},
		{Lease: lease(snooze), State: queue.StateScheduled, At: now, RunAt: now.Add(time.Hour), UndoAttempt: true},
		{Lease: lease(back), State: queue.StateAvailable, At: now, RunAt: now, UndoAttempt: true},
	}
	applied, err := d.Finish(h.ctx, outcomes)
	if err != nil || !slices.Equal(applied, []bool{true, true, true, true}) {
		h.Fatalf("Finish: applied %v err %v, want all applied", applied, err)
	}
	check := func(j *queue.Job, state queue.JobState, attempt int, runAt time.Time) *queue.Job {
		h.Helper()
		got := h.get(c, j.ID)
		if got.State != state || got.Attempt != attempt || (!runAt.IsZero() && !got.RunAt.Equal(runAt)) || got.LeaseExpiresAt != nil {
			h.Errorf("after Finish: %s lease %v, want %s attempt %d run_at %s, no lease", describe(got), got.LeaseExpiresAt, state, attempt, runAt)
		}
		return got
	}
	if got := check(done, queue.StateCompleted, 1, time.Time{}); !jsonEqual(got.Result, []byte(`{"ok":1}`)) || got.FinalizedAt == nil || got.Progress != 100 {
		h.Errorf("completed: result %s finalized %v progress %d", got.Result, got.FinalizedAt, got.Progress)
	}
	if got := check(retry, queue.StateRetryable, 1, now.Add(time.Minute)); len(got.Errors) != 1 || got.Errors[0].Error != "try again" || got.FinalizedAt != nil {
		h.Errorf("retryable: errors %+v finalized %v", got.Errors, got.FinalizedAt)
	}
	check(snooze, queue.StateScheduled, 0, now.Add(time.Hour))
	check(back, queue.StateAvailable, 0, now)
	// The leases are spent.
	applied, err = d.Finish(h.ctx, outcomes)
	if err != nil || !slices.Equal(applied, []bool{false, false, false, false}) {
		h.Errorf("Finish with spent leases: applied %v err %v, want none applied", applied, err)
	}

	next, ok, err := d.NextRunAt(h.ctx)
	if err != nil || !ok || !next.Equal(now.Add(time.Minute)) {
		h.Errorf("NextRunAt: %s %v %v, want %s", next, ok, err, now.Add(time.Minute))
	}
	if queues, err := d.Promote(h.ctx, now.Add(59*time.Second), 100); err != nil || len(queues) != 0 {
		h.Errorf("Promote before anything is due: %v %v", queues, err)
	}
	queues, err := d.Promote(h.ctx, now.Add(time.Minute), 100)
	if err != nil || !slices.Equal(queues, []string{"dq"}) {
		h.Errorf("Promote: queues %v err %v, want [dq]", queues, err)
	}
	check(retry, queue.StateAvailable, 1, now.Add(time.Minute))
	check(snooze, queue.StateScheduled, 0, now.Add(time.Hour))

	// Cancellation of a running job is a flag its worker polls.
	running := claim(1, 14)
	if len(running) != 1 {
		h.Fatalf("claim returned %d jobs, want 1", len(running))
	}
	flagged, changed, err := d.CancelJob(h.ctx, nil, running[0].ID, now)
	if err != nil || changed || flagged.State != queue.StateRunning || !flagged.CancelRequested {
		h.Errorf("CancelJob of a running job: %s changed %v err %v, want running with cancel_requested", describe(flagged), changed, err)
	}
	req, err := d.CancelRequested(h.ctx, []int64{done.ID, running[0].ID, other.ID})
	if err != nil || !slices.Equal(req, []int64{running[0].ID}) {
		h.Errorf("CancelRequested: %v %v, want [%d]", req, err, running[0].ID)
	}
	if req, err := d.CancelRequested(h.ctx, []int64{other.ID}); err != nil || len(req) != 0 {
		h.Errorf("CancelRequested of other ids: %v %v, want none", req, err)
	}
	cancelled, changed, err := d.CancelJob(h.ctx, nil, other.ID, now)
	if err != nil || !changed || cancelled.State != queue.StateCancelled {
		h.Errorf("CancelJob of an available job: %s changed %v err %v", describe(cancelled), changed, err)
	}
}

// testDriverRescueGuard: a rescue outcome (ExpiredBefore set) applies only
// if the lease really expired before that time.
func testDriverRescueGuard(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("job", nop)
	c := h.newClient(w, nil)
	h.insert(c, queue.InsertParams{Kind: "job"})
	j := h.claimAsDeadWorker(queue.DefaultQueue, 5)
	now := h.clock.Now()
	l := queue.Lease{ID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}
	rescue := func(at time.Time) bool {
		h.Helper()
		applied, err := h.driver.Finish(h.ctx, []queue.Outcome{{Lease: l, State: queue.StateRetryable, At: at, RunAt: at, ExpiredBefore: at,
			Error: &queue.AttemptError{Attempt: 1, At: at, Error: "lease expired"}}})
		if err != nil {
			h.Fatal(err)
		}
		return applied[0]
	}
	if expired, err := h.driver.ExpiredLeases(h.ctx, now.Add(30*time.Second), 10); err != nil || len(expired) != 0 {
		h.Errorf("ExpiredLeases before expiry: %d jobs, err %v", len(expired), err)
	}
	if rescue(now.Add(30 * time.Second)) {
		h.Errorf("rescue applied to a lease that had not expired")
	}
	// A heartbeat moves the lease on; the rescuer's view is out of date.
	if held, err := h.driver.ExtendLeases(h.ctx, []queue.Lease{l}, now.Add(3*time.Minute)); err != nil || !held[0] {
		h.Fatalf("ExtendLeases: %v %v", held, err)
	}
	if expired, err := h.driver.ExpiredLeases(h.ctx, now.Add(2*time.Minute), 10); err != nil || len(expired) != 0 {
		h.Errorf("ExpiredLeases after a heartbeat: %d jobs, err %v", len(expired), err)
	}
	if rescue(now.Add(2 * time.Minute)) {
		h.Errorf("rescue applied to a lease a heartbeat had extended")
	}
	expired, err := h.driver.ExpiredLeases(h.ctx, now.Add(4*time.Minute), 10)
	if err != nil || len(expired) != 1 || expired[0].ID != j.ID || expired[0].LeaseToken != l.Token {
		h.Fatalf("ExpiredLeases after expiry: %d jobs, err %v; want job %d with its lease", len(expired), err, j.ID)
	}
	if !rescue(now.Add(4 * time.Minute)) {
		h.Errorf("rescue of an expired lease was not applied")
	}
	if got := h.get(c, j.ID); got.State != queue.StateRetryable || len(got.Errors) != 1 {
		h.Errorf("after rescue: %s", describe(got))
	}
}

// testDriverLeadership: one holder at a time, renewal, expiry and resign.
func testDriverLeadership(h *harness) {
	d := h.driver
	now := h.clock.Now()
	lead := func(id string, at time.Duration) bool {
		h.Helper()
		ok, err := d.TryLead(h.ctx, "queuetest", id, now.Add(at), time.Second)
		if err != nil {
			h.Fatal(err)
		}
		return ok
	}
	if !lead("a", 0) {
		h.Fatal("first TryLead failed")
	}
	if lead("b", 500*time.Millisecond) {
		h.Error("b took an unexpired leadership")
	}
	if !lead("a", 900*time.Millisecond) {
		h.Error("a could not renew")
	}
	if lead("b", 1500*time.Millisecond) {
		h.Error("b took a renewed leadership before it expired")
	}
	if !lead("b", 2*time.Second) {
		h.Error("b could not take an expired leadership")
	}
	if lead("a", 2*time.Second) {
		h.Error("a leads alongside b")
	}
	if err := d.Resign(h.ctx, "queuetest", "a"); err != nil {
		h.Fatal(err)
	}
	if lead("a", 2*time.Second) {
		h.Error("a resigning a leadership it did not hold released b's")
	}
	if err := d.Resign(h.ctx, "queuetest", "b"); err != nil {
		h.Fatal(err)
	}
	if !lead("a", 2*time.Second) {
		h.Error("a could not lead after b resigned")
	}
	// Names are independent.
	if ok, err := d.TryLead(h.ctx, "queuetest.other", "b", now.Add(2*time.Second), time.Second); err != nil || !ok {
		h.Errorf("TryLead of another name: %v %v, want true", ok, err)
	}
}
