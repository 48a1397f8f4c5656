package queuetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var insertTests = []test{
	{"Batch5000RunOnce", testBatchRunsOnce},
	{"InsertTx", testInsertTx},
	{"BadInput", testBadInput},
}

type indexArgs struct {
	I int `json:"i"`
}

// testBatchRunsOnce: 5,000 jobs inserted in one batch all run, each
// exactly once.
func testBatchRunsOnce(h *harness) {
	const n = 5000
	runs := make([]atomic.Int32, n)
	var total atomic.Int32
	w := queue.NewWorkers()
	w.Handle("bulk", queue.Typed(func(ctx context.Context, j *queue.Job, a indexArgs) error {
		runs[a.I].Add(1)
		total.Add(1)
		return nil
	}))
	c := h.newClient(w, map[string]int{"bulk": 50})
	params := make([]queue.InsertParams, n)
	for i := range params {
		params[i] = queue.InsertParams{Kind: "bulk", Args: mustJSON(h, indexArgs{I: i}), Opts: queue.InsertOpts{Queue: "bulk"}}
	}
	res, err := c.InsertMany(h.ctx, params)
	if err != nil {
		h.Fatal(err)
	}
	if len(res) != n {
		h.Fatalf("InsertMany returned %d results for %d jobs", len(res), n)
	}
	for i, r := range res {
		if r.Duplicate || r.Job.State != queue.StateAvailable || (i > 0 && r.Job.ID <= res[i-1].Job.ID) {
			h.Fatalf("result %d: %s duplicate %v; want new available jobs with increasing ids", i, describe(r.Job), r.Duplicate)
		}
		if !jsonEqual(r.Job.Args, params[i].Args) {
			h.Fatalf("result %d has args %s, want %s: results must be in insertion order", i, r.Job.Args, params[i].Args)
		}
	}
	if err := c.Start(h.ctx); err != nil {
		h.Fatal(err)
	}
	eventually(h, 60*time.Second, func() bool {
		stats, err := c.Queues(h.ctx)
		if err != nil {
			return false
		}
		s := findQueue(stats, "bulk")
		return s != nil && s.Counts[queue.StateCompleted] == n
	}, "%d jobs to complete (handlers ran %d times)", n, total.Load())
	for i := range runs {
		if k := runs[i].Load(); k != 1 {
			h.Errorf("job %d ran %d times, want once", i, k)
		}
	}
}

// testInsertTx: jobs inserted in the caller's transaction exist if and
// only if it commits.
func testInsertTx(h *harness) {
	db := h.sqlDB("InsertTx is not tested")
	w := queue.NewWorkers()
	w.HandleFunc("tx", nop)
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})

	insertTx := func(commit bool, ps ...queue.InsertParams) []queue.InsertResult {
		h.Helper()
		return inTx(h, db, commit, func(tx *sql.Tx) ([]queue.InsertResult, error) {
			res, err := c.InsertTx(h.ctx, tx, ps...)
			if err != nil {
				return nil, fmt.Errorf("InsertTx: %w", err)
			}
			return res, nil
		})
	}
	committed := insertTx(true, queue.InsertParams{Kind: "tx", Args: []byte(`{"n":1}`)})[0].Job
	h.waitState(c, committed.ID, queue.StateCompleted)

	res := insertTx(false, queue.InsertParams{Kind: "tx", Args: []byte(`{"n":2}`)},
		queue.InsertParams{Kind: "tx", Args: []byte(`{"n":3}`), Opts: queue.InsertOpts{RunIn: time.Minute}})
	for _, r := range res {
		if _, err := c.Get(h.ctx, r.Job.ID); !errors.Is(err, queue.ErrNotFound) {
			h.Errorf("job %d inserted in a rolled back transaction: Get returned %v, want ErrNotFound", r.Job.ID, err)
		}
	}
	jobs, err := c.List(h.ctx, queue.ListParams{Kinds: []string{"tx"}})
	if err != nil || len(jobs) != 1 || jobs[0].ID != committed.ID {
		h.Errorf("jobs of kind tx: %d (err %v), want only the committed one", len(jobs), err)
	}
	if _, err := c.InsertTx(h.ctx, nil, queue.InsertParams{Kind: "tx"}); !errors.Is(err, queue.ErrInvalid) {
		h.Errorf("InsertTx without a transaction: %v, want ErrInvalid", err)
	}
}

type typedArgs struct {
	N int `json:"n"`
}

func (a *typedArgs) Validate() error {
	if a.N <= 0 {
		return errors.New("n must be positive")
	}
	return nil
}

// testBadInput: invalid inserts are refused with ErrInvalid or
// ErrUnknownKind and insert nothing.
func testBadInput(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("known", nop)
	w.Handle("typed", queue.Typed(func(ctx context.Context, j *queue.Job, a typedArgs) error { return nil }))
	c := h.newClient(w, nil)

	invalid := []struct {
		name string
		p    queue.InsertParams
	}{
		{"empty kind", queue.InsertParams{Kind: ""}},
		{"kind with a space", queue.InsertParams{Kind: "two words"}},
		{"kind with a control character", queue.InsertParams{Kind: "tab\tkind"}},
		{"kind too long", queue.InsertParams{Kind: strings.Repeat("k", queue.MaxKindLength+1)}},
		{"args not JSON", queue.InsertParams{Kind: "known", Args: []byte(`{"a":`)}},
		{"args too large", queue.InsertParams{Kind: "known", Args: []byte(`"` + strings.Repeat("x", queue.MaxArgsBytes) + `"`)}},
		{"priority too high", queue.InsertParams{Kind: "known", Opts: queue.InsertOpts{Priority: queue.MaxPriority + 1}}},
		{"priority too low", queue.InsertParams{Kind: "known", Opts: queue.InsertOpts{Priority: -queue.MaxPriority - 1}}},
		{"queue name with a space", queue.InsertParams{Kind: "known", Opts: queue.InsertOpts{Queue: "a queue"}}},
		{"negative RunIn", queue.InsertParams{Kind: "known", Opts: queue.InsertOpts{RunIn: -time.Second}}},
		{"unknown backoff", queue.InsertParams{Kind: "known", Opts: queue.InsertOpts{Retry: &queue.RetryPolicy{Backoff: "linear"}}}},
		{"jitter above 1", queue.InsertParams{Kind: "known", Opts: queue.InsertOpts{Retry: &queue.RetryPolicy{Jitter: 1.5}}}},
		{"unknown unique state", queue.InsertParams{Kind: "known", Opts: queue.InsertOpts{UniqueKey: "k", UniqueStates: []queue.JobState{"done"}}}},
		{"unique key too long", queue.InsertParams{Kind: "known", Opts: queue.InsertOpts{UniqueKey: strings.Repeat("u", queue.MaxUniqueKey+1)}}},
		{"metadata not JSON", queue.InsertParams{Kind: "known", Opts: queue.InsertOpts{Metadata: []byte("{")}}},
		{"typed args of the wrong type", queue.InsertParams{Kind: "typed", Args: []byte(`{"n":"five"}`)}},
		{"typed args with an unknown field", queue.InsertParams{Kind: "typed", Args: []byte(`{"n":1,"m":2}`)}},
		{"typed args failing Validate", queue.InsertParams{Kind: "typed", Args: []byte(`{"n":0}`)}},
	}
	for _, tc := range invalid {
		if _, err := c.Insert(h.ctx, tc.p); !errors.Is(err, queue.ErrInvalid) {
			h.Errorf("%s: Insert returned %v, want ErrInvalid", tc.name, err)
		}
		if err := c.ValidateInsert(tc.p); !errors.Is(err, queue.ErrInvalid) {
			h.Errorf("%s: ValidateInsert returned %v, want ErrInvalid", tc.name, err)
		}
	}
	if _, err := c.Insert(h.ctx, queue.InsertParams{Kind: "unknown"}); !errors.Is(err, queue.ErrUnknownKind) {
		h.Errorf("unknown kind: %v, want ErrUnknownKind", err)
	}
	// A kind registered as unavailable is refused with its reason.
	w.HandleFunc("video", nop, queue.WithUnavailable(errors.New("ffmpeg not found on PATH")))
	if _, err := c.Insert(h.ctx, queue.InsertParams{Kind: "video"}); !errors.Is(err, queue.ErrKindUnavailable) || !strings.Contains(err.Error(), "ffmpeg not found") {
		h.Errorf("unavailable kind: %v, want ErrKindUnavailable with the reason", err)
	}
	if err := c.ValidateInsert(queue.InsertParams{Kind: "video"}); !errors.Is(err, queue.ErrKindUnavailable) {
		h.Errorf("unavailable kind, ValidateInsert: %v", err)
	}
	// One bad job refuses the whole batch.
	_, err := c.InsertMany(h.ctx, []queue.InsertParams{{Kind: "known"}, {Kind: "known", Args: []byte("nope")}})
	if !errors.Is(err, queue.ErrInvalid) {
		h.Errorf("batch with an invalid job: %v, want ErrInvalid", err)
	}
	if jobs, err := c.List(h.ctx, queue.ListParams{}); err != nil || len(jobs) != 0 {
		h.Errorf("refused inserts stored %d jobs (err %v)", len(jobs), err)
	}

	// The edges of the ranges are fine.
	for _, p := range []queue.InsertParams{
		{Kind: "known", Opts: queue.InsertOpts{Priority: queue.MaxPriority}},
		{Kind: "known", Opts: queue.InsertOpts{Priority: -queue.MaxPriority}},
		{Kind: strings.Repeat("k", queue.MaxKindLength), Args: []byte(`[1, 2]`)},
		{Kind: "typed", Args: []byte(`{"n":5}`)},
	} {
		if p.Kind != "known" && p.Kind != "typed" {
			w.HandleFunc(p.Kind, nop)
		}
		if _, err := c.Insert(h.ctx, p); err != nil {
			h.Errorf("valid insert %.20s: %v", p.Kind, err)
		}
	}
	// A client that allows unknown kinds stores them.
	lax := h.newClient(nil, nil, func(cfg *queue.Config) { cfg.AllowUnknownKinds = true })
	if _, err := lax.Insert(h.ctx, queue.InsertParams{Kind: "unknown"}); err != nil {
		h.Errorf("unknown kind with AllowUnknownKinds: %v", err)
	}
	// Bad configuration and registration are refused up front.
	if _, err := queue.New(queue.Config{Driver: h.driver, Workers: w, Queues: map[string]queue.QueueConfig{"q": {MaxWorkers: 0}}}); err == nil {
		h.Errorf("queue.New accepted MaxWorkers 0")
	}
	if _, err := queue.New(queue.Config{Driver: h.driver, LeaseDuration: time.Second, HeartbeatInterval: time.Second}); err == nil {
		h.Errorf("queue.New accepted a heartbeat as long as the lease")
	}
	if !panics(func() { w.HandleFunc("bad kind", nop) }) {
		h.Errorf("Workers.HandleFunc accepted an invalid kind name")
	}
	if !panics(func() { w.HandleFunc("known", nop) }) {
		h.Errorf("Workers.HandleFunc accepted a kind twice")
	}
}

func panics(fn func()) (did bool) {
	defer func() {
		if recover() != nil {
			did = true
		}
	}()
	fn()
	return false
}
