package queuetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var schedulingTests = []test{
	{"Priority", testPriority},
	{"QueueConcurrency", testQueueConcurrency},
	{"PauseResumeAcrossClients", testPauseResume},
	{"StartWithDueJobs", testStartWithDueJobs},
}

// slowPausedDriver delays the first PausedQueues call after it returns.
type slowPausedDriver struct {
	queue.Driver
	once sync.Once
}

func (d *slowPausedDriver) PausedQueues(ctx context.Context) ([]string, error) {
	names, err := d.Driver.PausedQueues(ctx)
	d.once.Do(func() { time.Sleep(200 * time.Millisecond) })
	return names, err
}

// testStartWithDueJobs: a client started over scheduled jobs that are
// already due (the usual restart) promotes and runs them all. The leader
// loop wakes producers as soon as it promotes, so it must not race with
// Start setting the producers up (run with -race).
func testStartWithDueJobs(h *harness) {
	var ran atomic.Int32
	w := queue.NewWorkers()
	w.HandleFunc("due", func(context.Context, *queue.Job) error { ran.Add(1); return nil })
	queues := map[string]int{}
	for i := range 16 {
		queues[fmt.Sprintf("q%02d", i)] = 1
	}
	ins := h.newClient(w, nil)
	for q := range queues {
		h.insert(ins, queue.InsertParams{Kind: "due", Opts: queue.InsertOpts{Queue: q, RunIn: time.Second}})
	}
	h.clock.Advance(time.Minute)
	// Stretch Start's first read of the paused queues so that the leader
	// loop promotes (and looks up producers) while Start is under way.
	slow := &slowPausedDriver{Driver: h.driver}
	h.startClient(w, queues, withDriver(slow))
	eventually(h, waitTimeout, func() bool { return int(ran.Load()) == len(queues) }, "%d due jobs to run", len(queues))
}

// testPriority: within a queue, higher priority runs first; equal
// priorities run in insertion order.
func testPriority(h *harness) {
	var mu sync.Mutex
	var order []int64
	w := queue.NewWorkers()
	w.HandleFunc("prio", func(ctx context.Context, j *queue.Job) error {
		mu.Lock()
		order = append(order, j.ID)
		mu.Unlock()
		return nil
	})
	c := h.newClient(w, map[string]int{queue.DefaultQueue: 1})
	type ins struct {
		id   int64
		prio int
	}
	var jobs []ins
	for _, p := range []int{0, 5, -3, queue.MaxPriority, 5, -queue.MaxPriority, 0} {
		j := h.insert(c, queue.InsertParams{Kind: "prio", Opts: queue.InsertOpts{Priority: p}})
		jobs = append(jobs, ins{j.ID, p})
	}
	sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].prio > jobs[b].prio })
	want := make([]int64, len(jobs))
	for i, j := range jobs {
		want[i] = j.id
	}
	if err := c.Start(h.ctx); err != nil {
		h.Fatal(err)
	}
	eventually(h, waitTimeout, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == len(want)
	}, "%d jobs to run", len(want))
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, want) {
		h.Errorf("jobs ran in order %v, want %v (by priority, then insertion)", order, want)
	}
}

type concurrency struct{ cur, max atomic.Int32 }

func (c *concurrency) enter() {
	n := c.cur.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			return
		}
	}
}

// testQueueConcurrency: a client runs at most MaxWorkers jobs of each of
// its queues at once, uses them all, and never touches other queues.
func testQueueConcurrency(h *harness) {
	gate := make(chan struct{})
	counters := map[string]*concurrency{"wide": {}, "narrow": {}}
	w := queue.NewWorkers()
	w.HandleFunc("conc", func(ctx context.Context, j *queue.Job) error {
		c := counters[j.Queue]
		c.enter()
		defer c.cur.Add(-1)
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	c := h.startClient(w, map[string]int{"wide": 3, "narrow": 1})
	var params []queue.InsertParams
	for i := 0; i < 12; i++ {
		params = append(params, queue.InsertParams{Kind: "conc", Opts: queue.InsertOpts{Queue: "wide"}})
	}
	for i := 0; i < 4; i++ {
		params = append(params, queue.InsertParams{Kind: "conc", Opts: queue.InsertOpts{Queue: "narrow"}})
	}
	for i := 0; i < 2; i++ {
		params = append(params, queue.InsertParams{Kind: "conc", Opts: queue.InsertOpts{Queue: "unworked"}})
	}
	if _, err := c.InsertMany(h.ctx, params); err != nil {
		h.Fatal(err)
	}
	eventually(h, waitTimeout, func() bool {
		return counters["wide"].cur.Load() == 3 && counters["narrow"].cur.Load() == 1
	}, "3 wide and 1 narrow handlers to run at once")
	running, err := c.List(h.ctx, queue.ListParams{States: []queue.JobState{queue.StateRunning}})
	if err != nil {
		h.Fatal(err)
	}
	if len(running) != 4 {
		h.Errorf("%d jobs running with all worker slots busy, want 4 (a client must not claim more than it can run)", len(running))
	}
	close(gate)
	eventually(h, waitTimeout, func() bool {
		done, err := c.List(h.ctx, queue.ListParams{States: []queue.JobState{queue.StateCompleted}})
		return err == nil && len(done) == 16
	}, "16 jobs to complete")
	if m := counters["wide"].max.Load(); m != 3 {
		h.Errorf("wide queue ran %d at once, want 3", m)
	}
	if m := counters["narrow"].max.Load(); m != 1 {
		h.Errorf("narrow queue ran %d at once, want 1", m)
	}
	left, err := c.List(h.ctx, queue.ListParams{Queues: []string{"unworked"}, States: []queue.JobState{queue.StateAvailable}})
	if err != nil || len(left) != 2 {
		h.Errorf("jobs of a queue no client works: %d available (err %v), want 2", len(left), err)
	}
}

// testPauseResume: a pause made through one client stops every client from
// claiming within its PollInterval; resume lets them claim again.
func testPauseResume(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("job", nop)
	// The controller works no queues, like an HTTP server; the worker polls
	// the database (the spy hides change notifications) and counts its
	// reads of the pause state.
	ctl := h.startClient(w, nil)
	spy := &spyDriver{Driver: h.driver}
	worker := h.startClient(w, map[string]int{"q": 2}, withDriver(spy))

	first := h.insert(ctl, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Queue: "q"}})
	h.waitState(ctl, first.ID, queue.StateCompleted)

	if err := ctl.Pause(h.ctx, "q"); err != nil {
		h.Fatal(err)
	}
	// Three reads that return after Pause: the second began after the
	// first returned, so after the pause, and the third after the worker
	// stored the second's answer.
	waitCalls(h, &spy.pausedCalls, 3, "PausedQueues")
	stats, err := ctl.Queues(h.ctx)
	if err != nil {
		h.Fatal(err)
	}
	if s := findQueue(stats, "q"); s == nil || !s.Paused {
		h.Errorf("queue stats after pause: %+v, want q paused", s)
	}
	var ids []int64
	for i := 0; i < 4; i++ {
		ids = append(ids, h.insert(ctl, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Queue: "q"}}).ID)
	}
	// Give the worker more than two poll intervals in which it must not
	// claim.
	waitCalls(h, &spy.pausedCalls, 3, "PausedQueues")
	for _, id := range ids {
		if j := h.get(ctl, id); j.State != queue.StateAvailable {
			h.Errorf("job %d of a paused queue is %s, want available", id, j.State)
		}
	}

	if err := ctl.Resume(h.ctx, "q"); err != nil {
		h.Fatal(err)
	}
	for _, id := range ids {
		if j := h.waitState(ctl, id, queue.StateCompleted); j.AttemptedBy != worker.ID() {
			h.Errorf("job %d ran on %q, want the worker", id, j.AttemptedBy)
		}
	}
	stats, err = ctl.Queues(h.ctx)
	if err != nil {
		h.Fatal(err)
	}
	if s := findQueue(stats, "q"); s == nil || s.Paused {
		h.Errorf("queue stats after resume: %+v, want q not paused", s)
	}
	if err := ctl.Pause(h.ctx, "not a queue"); !errors.Is(err, queue.ErrInvalid) {
		h.Errorf("pause of an invalid queue name: %v, want ErrInvalid", err)
	}
}

func findQueue(stats []queue.QueueStats, name string) *queue.QueueStats {
	for i := range stats {
		if stats[i].Name == name {
			return &stats[i]
		}
	}
	return nil
}
