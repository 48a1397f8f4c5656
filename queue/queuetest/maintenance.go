package queuetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var pruneTests = []test{
	{"Retention", testPrune},
}

var opsTests = []test{
	{"Retry", testRetryOp},
	{"RetryAndCancelTx", testRetryCancelTx},
	{"Delete", testDeleteOp},
	{"ListFiltersAndPages", testList},
	{"QueueStats", testQueueStats},
}

var schemaTests = []test{
	{"MigrateIsIdempotent", testSchema},
}

// testRetryCancelTx: RetryTx and CancelTx take effect if and only if the
// caller's transaction commits.
func testRetryCancelTx(h *harness) {
	db := h.sqlDB("RetryTx and CancelTx are not tested")
	w := queue.NewWorkers()
	w.HandleFunc("job", nop)
	c := h.newClient(w, nil) // not started: the jobs stay as the test sets them

	waiting := h.insert(c, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{RunIn: time.Hour}})
	if j := inTx(h, db, false, func(tx *sql.Tx) (*queue.Job, error) { return c.CancelTx(h.ctx, tx, waiting.ID) }); j.State != queue.StateCancelled {
		h.Errorf("CancelTx returned %s, want cancelled", describe(j))
	}
	if got := h.get(c, waiting.ID); got.State != queue.StateScheduled {
		h.Errorf("CancelTx in a rolled back transaction left %s, want scheduled", describe(got))
	}
	inTx(h, db, true, func(tx *sql.Tx) (*queue.Job, error) { return c.CancelTx(h.ctx, tx, waiting.ID) })
	if got := h.get(c, waiting.ID); got.State != queue.StateCancelled {
		h.Errorf("CancelTx in a committed transaction left %s, want cancelled", describe(got))
	}

	if j := inTx(h, db, false, func(tx *sql.Tx) (*queue.Job, error) { return c.RetryTx(h.ctx, tx, waiting.ID) }); j.State != queue.StateAvailable {
		h.Errorf("RetryTx returned %s, want available", describe(j))
	}
	if got := h.get(c, waiting.ID); got.State != queue.StateCancelled {
		h.Errorf("RetryTx in a rolled back transaction left %s, want cancelled", describe(got))
	}
	inTx(h, db, true, func(tx *sql.Tx) (*queue.Job, error) { return c.RetryTx(h.ctx, tx, waiting.ID) })
	if got := h.get(c, waiting.ID); got.State != queue.StateAvailable || got.FinalizedAt != nil {
		h.Errorf("RetryTx in a committed transaction left %s, want available", describe(got))
	}

	if _, err := c.RetryTx(h.ctx, nil, waiting.ID); !errors.Is(err, queue.ErrInvalid) {
		h.Errorf("RetryTx without a transaction: %v, want ErrInvalid", err)
	}
	if _, err := c.CancelTx(h.ctx, "not a transaction", waiting.ID); !errors.Is(err, queue.ErrInvalid) {
		h.Errorf("CancelTx with a string for a transaction: %v, want ErrInvalid", err)
	}
	tx, err := db.BeginTx(h.ctx, nil)
	if err != nil {
		h.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := c.RetryTx(h.ctx, tx, waiting.ID+1000); !errors.Is(err, queue.ErrNotFound) {
		h.Errorf("RetryTx of a missing job: %v, want ErrNotFound", err)
	}
}

// testPrune: the leader deletes finished jobs older than their state's
// retention and keeps the rest.
func testPrune(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("done", nop)
	w.HandleFunc("fail", func(context.Context, *queue.Job) error { return queue.Permanent(errors.New("no")) })
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 2}, func(cfg *queue.Config) {
		cfg.Retention = queue.Retention{Completed: time.Hour, Failed: 2 * time.Hour, Cancelled: -1}
	})
	completed := func() *queue.Job {
		j := h.insert(c, queue.InsertParams{Kind: "done"})
		return h.waitState(c, j.ID, queue.StateCompleted)
	}
	exists := func(what string, j *queue.Job) {
		h.Helper()
		if _, err := c.Get(h.ctx, j.ID); err != nil {
			h.Errorf("%s (job %d) was pruned: %v", what, j.ID, err)
		}
	}

	c1 := completed()
	f1 := h.insert(c, queue.InsertParams{Kind: "fail"})
	h.waitState(c, f1.ID, queue.StateFailed)
	x1 := h.insert(c, queue.InsertParams{Kind: "done", Opts: queue.InsertOpts{RunIn: time.Hour}})
	if _, err := c.Cancel(h.ctx, x1.ID); err != nil {
		h.Fatal(err)
	}
	scheduled := h.insert(c, queue.InsertParams{Kind: "done", Opts: queue.InsertOpts{RunIn: 10000 * time.Hour}})
	available := h.insert(c, queue.InsertParams{Kind: "done", Opts: queue.InsertOpts{Queue: "parked"}})

	h.clock.Advance(45 * time.Minute)
	c2 := completed()

	// 95 minutes: only the first completed job is past its hour. The pass
	// that deleted it saw every other job too.
	h.clock.Advance(50 * time.Minute)
	h.waitGone(c, c1.ID)
	exists("job completed 50 minutes ago", c2)
	exists("job failed 95 minutes ago", f1)
	exists("cancelled job", x1)

	// 155 minutes: the failed job and the second completed job go.
	h.clock.Advance(time.Hour)
	h.waitGone(c, f1.ID)
	h.waitGone(c, c2.ID)
	exists("cancelled job kept forever", x1)

	// Much later, with a fresh canary: unfinished jobs and cancelled jobs
	// (negative retention) stay.
	c3 := completed()
	h.clock.Advance(1000 * time.Hour)
	h.waitGone(c, c3.ID)
	exists("cancelled job kept forever", x1)
	exists("scheduled job", scheduled)
	exists("available job", available)
}

// testRetryOp: Retry makes a finished job run again, granting an attempt
// when they are exhausted; a running job cannot be retried or deleted.
func testRetryOp(h *harness) {
	var fragileCalls atomic.Int32
	blocking := make(chan struct{}, 1)
	w := queue.NewWorkers()
	w.HandleFunc("fragile", func(context.Context, *queue.Job) error {
		if fragileCalls.Add(1) == 1 {
			return queue.Permanent(errors.New("first run fails"))
		}
		return nil
	}, noRetry)
	w.HandleFunc("block", func(ctx context.Context, j *queue.Job) error {
		blocking <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	w.HandleFunc("later", nop)
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 2})

	j := h.insert(c, queue.InsertParams{Kind: "fragile"})
	h.waitState(c, j.ID, queue.StateFailed)
	got, err := c.Retry(h.ctx, j.ID)
	if err != nil {
		h.Fatal(err)
	}
	if got.State != queue.StateAvailable || got.MaxAttempts < 2 || got.FinalizedAt != nil || got.RunAt.After(h.clock.Now()) {
		h.Errorf("Retry of a failed job returned %s finalized %v, want available now with an attempt to spare", describe(got), got.FinalizedAt)
	}
	if got := h.waitState(c, j.ID, queue.StateCompleted); got.Attempt != 2 {
		h.Errorf("retried job completed at attempt %d, want 2", got.Attempt)
	}

	// A scheduled job runs now.
	later := h.insert(c, queue.InsertParams{Kind: "later", Opts: queue.InsertOpts{RunIn: time.Hour}})
	if got, err := c.Retry(h.ctx, later.ID); err != nil || got.State != queue.StateAvailable {
		h.Errorf("Retry of a scheduled job: %s, %v; want available", describe(got), err)
	}
	h.waitState(c, later.ID, queue.StateCompleted)

	running := h.insert(c, queue.InsertParams{Kind: "block"})
	recv(h, blocking, "the blocking handler to start")
	_, err = c.Retry(h.ctx, running.ID)
	wantErr(h, "Retry of a running job", err, queue.ErrWrongState,
		fmt.Sprintf("retry job %d: job is in the wrong state for this operation: it is running", running.ID))
	_, err = c.Delete(h.ctx, running.ID)
	wantErr(h, "Delete of a running job", err, queue.ErrWrongState,
		fmt.Sprintf("delete job %d: job is in the wrong state for this operation: it is running; cancel it first", running.ID))
	if got := h.get(c, running.ID); got.State != queue.StateRunning {
		h.Errorf("refused operations changed a running job: %s", describe(got))
	}
	_, err = c.Retry(h.ctx, running.ID+1000)
	wantErr(h, "Retry of a missing job", err, queue.ErrNotFound, fmt.Sprintf("retry job %d: job not found", running.ID+1000))
	if _, err := c.Cancel(h.ctx, running.ID); err != nil {
		h.Fatal(err)
	}
	h.waitState(c, running.ID, queue.StateCancelled)
}

// testDeleteOp: Delete removes a job and returns it as it was.
func testDeleteOp(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("job", nop)
	c := h.newClient(w, nil)
	j := h.insert(c, queue.InsertParams{Kind: "job", Args: []byte(`{"x":1}`)})
	keep := h.insert(c, queue.InsertParams{Kind: "job"})
	got, err := c.Delete(h.ctx, j.ID)
	if err != nil {
		h.Fatal(err)
	}
	if got.ID != j.ID || got.State != queue.StateAvailable || !jsonEqual(got.Args, []byte(`{"x":1}`)) {
		h.Errorf("Delete returned %s args %s, want the job as it was", describe(got), got.Args)
	}
	_, err = c.Get(h.ctx, j.ID)
	wantErr(h, "Get after Delete", err, queue.ErrNotFound, fmt.Sprintf("get job %d: job not found", j.ID))
	_, err = c.Delete(h.ctx, j.ID)
	wantErr(h, "second Delete", err, queue.ErrNotFound, fmt.Sprintf("delete job %d: job not found", j.ID))
	h.get(c, keep.ID)
}

// testList: List filters by state, kind and queue, and pages with AfterID
// in both directions without gaps or repeats.
func testList(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("k1", nop)
	w.HandleFunc("k2", nop)
	c := h.newClient(w, nil)
	type spec struct {
		kind, queue string
		scheduled   bool
	}
	var params []queue.InsertParams
	var specs []spec
	for i := 0; i < 40; i++ {
		s := spec{kind: "k1", queue: "q1", scheduled: i%5 == 0}
		if i%2 == 1 {
			s.kind = "k2"
		}
		if i%4 >= 2 {
			s.queue = "q2"
		}
		p := queue.InsertParams{Kind: s.kind, Opts: queue.InsertOpts{Queue: s.queue}}
		if s.scheduled {
			p.Opts.RunIn = time.Hour
		}
		params = append(params, p)
		specs = append(specs, s)
	}
	res, err := c.InsertMany(h.ctx, params)
	if err != nil {
		h.Fatal(err)
	}
	ids := func(match func(spec) bool) []int64 {
		var out []int64
		for i, s := range specs {
			if match(s) {
				out = append(out, res[i].Job.ID)
			}
		}
		return out
	}
	list := func(p queue.ListParams) []int64 {
		h.Helper()
		jobs, err := c.List(h.ctx, p)
		if err != nil {
			h.Fatalf("List(%+v): %v", p, err)
		}
		out := make([]int64, len(jobs))
		for i, j := range jobs {
			out[i] = j.ID
		}
		return out
	}
	avail, sched := []queue.JobState{queue.StateAvailable}, []queue.JobState{queue.StateScheduled}
	cases := []struct {
		name string
		p    queue.ListParams
		want []int64
	}{
		{"all", queue.ListParams{Limit: 1000}, ids(func(spec) bool { return true })},
		{"scheduled", queue.ListParams{States: sched}, ids(func(s spec) bool { return s.scheduled })},
		{"kind k1", queue.ListParams{Kinds: []string{"k1"}}, ids(func(s spec) bool { return s.kind == "k1" })},
		{"queue q2", queue.ListParams{Queues: []string{"q2"}}, ids(func(s spec) bool { return s.queue == "q2" })},
		{"available k2 in q1", queue.ListParams{States: avail, Kinds: []string{"k2"}, Queues: []string{"q1"}},
			ids(func(s spec) bool { return !s.scheduled && s.kind == "k2" && s.queue == "q1" })},
		{"two states", queue.ListParams{States: append(avail, sched...)}, ids(func(spec) bool { return true })},
		{"no match", queue.ListParams{States: []queue.JobState{queue.StateFailed}}, nil},
	}
	for _, tc := range cases {
		if got := list(tc.p); !slices.Equal(got, tc.want) {
			h.Errorf("List %s: %v, want %v", tc.name, got, tc.want)
		}
	}

	page := func(p queue.ListParams, size int) []int64 {
		var all []int64
		p.Limit = size
		for n := 0; ; n++ {
			got := list(p)
			all = append(all, got...)
			if len(got) < size {
				return all
			}
			if n > 100 {
				h.Fatalf("paging does not end")
			}
			p.AfterID = got[len(got)-1]
		}
	}
	every := ids(func(spec) bool { return true })
	if got := page(queue.ListParams{}, 7); !slices.Equal(got, every) {
		h.Errorf("ascending pages: %v, want %v", got, every)
	}
	desc := slices.Clone(every)
	slices.Reverse(desc)
	if got := page(queue.ListParams{Desc: true}, 6); !slices.Equal(got, desc) {
		h.Errorf("descending pages: %v, want %v", got, desc)
	}
	if got, want := page(queue.ListParams{Kinds: []string{"k2"}}, 3), ids(func(s spec) bool { return s.kind == "k2" }); !slices.Equal(got, want) {
		h.Errorf("filtered pages: %v, want %v", got, want)
	}
	if _, err := c.List(h.ctx, queue.ListParams{States: []queue.JobState{"bogus"}}); !errors.Is(err, queue.ErrInvalid) {
		h.Errorf("List with an unknown state: %v, want ErrInvalid", err)
	}
}

// testQueueStats: per-queue counts by state, the pause flag, and the
// oldest available job.
func testQueueStats(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("ok", nop)
	w.HandleFunc("fail", func(context.Context, *queue.Job) error { return queue.Permanent(errors.New("no")) })
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 2})
	oldest := h.clock.Now()
	for _, kind := range []string{"ok", "ok", "fail"} {
		j := h.insert(c, queue.InsertParams{Kind: kind})
		h.waitJob(c, j.ID, "finished", func(j *queue.Job) bool { return j.State.Final() })
	}
	for i := 0; i < 3; i++ {
		h.insert(c, queue.InsertParams{Kind: "ok", Opts: queue.InsertOpts{Queue: "stats"}})
		h.clock.Advance(time.Second)
	}
	h.insert(c, queue.InsertParams{Kind: "ok", Opts: queue.InsertOpts{Queue: "stats", RunIn: time.Hour}})
	if err := c.Pause(h.ctx, "idle"); err != nil {
		h.Fatal(err)
	}
	stats, err := c.Queues(h.ctx)
	if err != nil {
		h.Fatal(err)
	}
	want := map[string]map[queue.JobState]int64{
		queue.DefaultQueue: {queue.StateCompleted: 2, queue.StateFailed: 1},
		"stats":            {queue.StateAvailable: 3, queue.StateScheduled: 1},
		"idle":             {},
	}
	if len(stats) != len(want) {
		h.Errorf("stats for %d queues, want %d: %+v", len(stats), len(want), stats)
	}
	for name, counts := range want {
		s := findQueue(stats, name)
		if s == nil {
			h.Errorf("no stats for queue %s", name)
			continue
		}
		for _, st := range queue.AllStates {
			if s.Counts[st] != counts[st] {
				h.Errorf("queue %s: %d %s jobs, want %d", name, s.Counts[st], st, counts[st])
			}
		}
		if s.Paused != (name == "idle") {
			h.Errorf("queue %s: paused %v", name, s.Paused)
		}
	}
	if s := findQueue(stats, "stats"); s != nil && (s.OldestAvailable == nil || !s.OldestAvailable.Equal(oldest)) {
		h.Errorf("oldest available = %v, want %s", s.OldestAvailable, oldest)
	}
	if s := findQueue(stats, "idle"); s != nil && s.OldestAvailable != nil {
		h.Errorf("empty queue has an oldest available job at %s", s.OldestAvailable)
	}
}

// testSchema: a migrated database is current, and migrating again changes
// nothing.
func testSchema(h *harness) {
	cur, latest, err := h.driver.SchemaVersion(h.ctx)
	if err != nil {
		h.Fatal(err)
	}
	if latest <= 0 || cur != latest {
		h.Fatalf("after migration: schema version %d, latest %d; want equal and positive", cur, latest)
	}
	w := queue.NewWorkers()
	w.HandleFunc("job", nop)
	c := h.newClient(w, nil)
	j := h.insert(c, queue.InsertParams{Kind: "job", Args: []byte(`{"keep":true}`)})
	for i := 0; i < 2; i++ {
		if err := h.driver.Migrate(h.ctx); err != nil {
			h.Fatalf("migrate again: %v", err)
		}
	}
	if c2, l2, err := h.driver.SchemaVersion(h.ctx); err != nil || c2 != cur || l2 != latest {
		h.Errorf("after migrating again: %d/%d (err %v), want %d/%d", c2, l2, err, cur, latest)
	}
	if got := h.get(c, j.ID); !jsonEqual(got.Args, []byte(`{"keep":true}`)) {
		h.Errorf("job changed by migrating again: %s", describe(got))
	}
	// Concurrent migrations are safe too.
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { errs <- h.driver.Migrate(context.Background()) }()
	}
	for i := 0; i < 3; i++ {
		if err := recv(h, errs, "a concurrent Migrate"); err != nil {
			h.Errorf("concurrent Migrate: %v", err)
		}
	}
	if err := c.Start(h.ctx); err != nil {
		h.Errorf("Start on a migrated database: %v", err)
	}
}
