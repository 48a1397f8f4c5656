package queuetest

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var uniqueTests = []test{
	{"Duplicate", testUniqueDuplicate},
	{"Window", testUniqueWindow},
	{"States", testUniqueStates},
	{"WithinBatch", testUniqueBatch},
}

func (h *harness) insertResult(c *queue.Client, p queue.InsertParams) queue.InsertResult {
	h.Helper()
	res, err := c.Insert(h.ctx, p)
	if err != nil {
		h.Fatalf("insert %s: %v", p.Kind, err)
	}
	return res
}

// testUniqueDuplicate: a second insert with the same kind and unique key
// returns the first job, marked Duplicate.
func testUniqueDuplicate(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("u", nop)
	w.HandleFunc("v", nop)
	c := h.newClient(w, nil)
	first := h.insertResult(c, queue.InsertParams{Kind: "u", Args: []byte(`{"n":1}`), Opts: queue.InsertOpts{UniqueKey: "k"}})
	if first.Duplicate || first.Job.UniqueKey != "k" {
		h.Errorf("first insert: duplicate %v key %q", first.Duplicate, first.Job.UniqueKey)
	}
	dup := h.insertResult(c, queue.InsertParams{Kind: "u", Args: []byte(`{"n":2}`), Opts: queue.InsertOpts{UniqueKey: "k"}})
	if !dup.Duplicate || dup.Job.ID != first.Job.ID {
		h.Errorf("second insert: duplicate %v job %d, want the first job %d", dup.Duplicate, dup.Job.ID, first.Job.ID)
	}
	if !jsonEqual(dup.Job.Args, []byte(`{"n":1}`)) {
		h.Errorf("duplicate returned args %s, want the existing job's", dup.Job.Args)
	}
	if other := h.insertResult(c, queue.InsertParams{Kind: "v", Opts: queue.InsertOpts{UniqueKey: "k"}}); other.Duplicate {
		h.Errorf("same key of another kind was a duplicate")
	}
	a := h.insertResult(c, queue.InsertParams{Kind: "u"})
	b := h.insertResult(c, queue.InsertParams{Kind: "u"})
	if a.Duplicate || b.Duplicate || a.Job.ID == b.Job.ID {
		h.Errorf("jobs without a key were deduplicated")
	}
	jobs, err := c.List(h.ctx, queue.ListParams{Kinds: []string{"u"}})
	if err != nil || len(jobs) != 3 {
		h.Errorf("%d jobs of kind u (err %v), want 3", len(jobs), err)
	}
}

// testUniqueWindow: with UniqueFor, only jobs created within the window
// are duplicates.
func testUniqueWindow(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("u", nop)
	c := h.newClient(w, nil)
	opts := queue.InsertOpts{UniqueKey: "w", UniqueFor: time.Hour}
	first := h.insertResult(c, queue.InsertParams{Kind: "u", Opts: opts})
	h.clock.Advance(30 * time.Minute)
	if r := h.insertResult(c, queue.InsertParams{Kind: "u", Opts: opts}); !r.Duplicate || r.Job.ID != first.Job.ID {
		h.Errorf("30 minutes into a 1h window: duplicate %v job %d, want job %d", r.Duplicate, r.Job.ID, first.Job.ID)
	}
	h.clock.Advance(31 * time.Minute)
	second := h.insertResult(c, queue.InsertParams{Kind: "u", Opts: opts})
	if second.Duplicate {
		h.Errorf("61 minutes after the first job, a 1h window still matched it")
	}
	// Without a window the key matches the existing jobs whatever their age.
	if r := h.insertResult(c, queue.InsertParams{Kind: "u", Opts: queue.InsertOpts{UniqueKey: "w"}}); !r.Duplicate {
		h.Errorf("key without a window did not match an existing job")
	}
}

// testUniqueStates: by default failed and cancelled jobs do not block a
// new one and completed ones do; UniqueStates chooses.
func testUniqueStates(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("u", func(ctx context.Context, j *queue.Job) error {
		var a struct{ Fail bool }
		_ = json.Unmarshal(j.Args, &a)
		if a.Fail {
			return queue.Permanent(errors.New("asked to fail"))
		}
		return nil
	})
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	key := queue.InsertOpts{UniqueKey: "f"}

	failed := h.insert(c, queue.InsertParams{Kind: "u", Args: []byte(`{"Fail":true}`), Opts: key})
	h.waitState(c, failed.ID, queue.StateFailed)
	again := h.insertResult(c, queue.InsertParams{Kind: "u", Opts: key})
	if again.Duplicate {
		h.Errorf("a failed job blocked a new one with the default unique states")
	}
	h.waitState(c, again.Job.ID, queue.StateCompleted)
	if r := h.insertResult(c, queue.InsertParams{Kind: "u", Opts: key}); !r.Duplicate || r.Job.ID != again.Job.ID {
		h.Errorf("a completed job did not block a new one with the default unique states")
	}

	cancelled := h.insert(c, queue.InsertParams{Kind: "u", Opts: queue.InsertOpts{UniqueKey: "c", RunIn: time.Hour}})
	if _, err := c.Cancel(h.ctx, cancelled.ID); err != nil {
		h.Fatal(err)
	}
	if r := h.insertResult(c, queue.InsertParams{Kind: "u", Opts: queue.InsertOpts{UniqueKey: "c", RunIn: time.Hour}}); r.Duplicate {
		h.Errorf("a cancelled job blocked a new one with the default unique states")
	}

	onlyFailed := queue.InsertOpts{UniqueKey: "f", UniqueStates: []queue.JobState{queue.StateFailed}}
	if r := h.insertResult(c, queue.InsertParams{Kind: "u", Opts: onlyFailed}); !r.Duplicate || r.Job.ID != failed.ID {
		h.Errorf("UniqueStates [failed]: duplicate %v job %d, want the failed job %d", r.Duplicate, r.Job.ID, failed.ID)
	}
}

// testUniqueBatch: duplicates inside one InsertMany batch resolve in order.
func testUniqueBatch(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("u", nop)
	c := h.newClient(w, nil)
	key := func(k string) queue.InsertParams {
		return queue.InsertParams{Kind: "u", Opts: queue.InsertOpts{UniqueKey: k}}
	}
	res, err := c.InsertMany(h.ctx, []queue.InsertParams{key("a"), key("a"), key("b"), {Kind: "u"}, key("a"), {Kind: "u"}, key("b")})
	if err != nil {
		h.Fatal(err)
	}
	wantDup := []int{-1, 0, -1, -1, 0, -1, 2} // index of the job each one duplicates
	seen := map[int64]bool{}
	for i, r := range res {
		if d := wantDup[i]; d >= 0 {
			if !r.Duplicate || r.Job.ID != res[d].Job.ID {
				h.Errorf("row %d: duplicate %v job %d, want a duplicate of row %d (job %d)", i, r.Duplicate, r.Job.ID, d, res[d].Job.ID)
			}
			continue
		}
		if r.Duplicate || seen[r.Job.ID] {
			h.Errorf("row %d: duplicate %v job %d, want a new job", i, r.Duplicate, r.Job.ID)
		}
		seen[r.Job.ID] = true
	}
	jobs, err := c.List(h.ctx, queue.ListParams{})
	if err != nil || len(jobs) != 4 {
		h.Errorf("%d jobs stored (err %v), want 4", len(jobs), err)
	}
}
