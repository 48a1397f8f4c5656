package queue_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// pruneRecorder is the real driver, recording what each Prune call
// deleted and the limit it was given.
type pruneRecorder struct {
	*sqlitedriver.Driver
	mu      sync.Mutex
	deleted []int
	limits  []int
}

func (d *pruneRecorder) Prune(ctx context.Context, p queue.PruneParams) (int, error) {
	n, err := d.Driver.Prune(ctx, p)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deleted = append(d.deleted, n)
	d.limits = append(d.limits, p.Limit)
	return n, err
}

func (d *pruneRecorder) calls() (deleted, limits []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.deleted), slices.Clone(d.limits)
}

// TestPrunerDeletesPastRetention: each pass deletes the finished jobs
// past their state's retention, in batches of at most the limit, until a
// batch comes back short; jobs within retention, jobs kept forever
// (negative retention) and unfinished jobs stay. A pruner that does not
// lead deletes nothing.
func TestPrunerDeletesPastRetention(t *testing.T) {
	e := newEnv(t)
	var old []*queue.Job
	for range 5 {
		j := e.start("q", 3)
		e.finish(j, queue.StateCompleted)
		old = append(old, j)
	}
	failed := e.start("q", 3)
	e.finish(failed, queue.StateFailed)
	cancelled := e.insert("q", 3, 0)
	if _, err := e.client.Cancel(e.ctx, cancelled.ID); err != nil {
		t.Fatal(err)
	}
	scheduled := e.insert("q", 3, 10000*time.Hour)
	available := e.insert("parked", 3, 0)
	e.clock.Advance(90 * time.Minute)
	recent := e.start("q", 3)
	e.finish(recent, queue.StateCompleted)
	// 100 minutes after the first jobs finished: only the five completed
	// jobs are past their hour; the failed job has two.
	e.clock.Advance(10 * time.Minute)

	d := &pruneRecorder{Driver: e.d}
	l := &leader{}
	p := queue.NewPruner(queue.PrunerConfig{
		Driver: d, Clock: e.clock, Logger: discard(), Interval: time.Hour,
		Retention: queue.Retention{Completed: time.Hour, Failed: 2 * time.Hour, Cancelled: -1},
		Batch:     2, IsLeader: l.IsLeader,
	})
	t.Cleanup(p.Stop)
	p.Start(e.ctx)
	p.Wake()
	l.waitTotal(t, 1, "the pass Wake asked for")
	if deleted, _ := d.calls(); len(deleted) != 0 {
		t.Fatalf("a pruner that does not lead pruned: %v", deleted)
	}

	l.set(true)
	p.Wake()
	// A pass ends with a short batch; none starts before the next Wake.
	eventually(t, "a pass to end", func() bool {
		deleted, _ := d.calls()
		return len(deleted) > 0 && deleted[len(deleted)-1] < 2
	})
	deleted, limits := d.calls()
	if !slices.Equal(deleted, []int{2, 2, 1}) || !slices.Equal(limits, []int{2, 2, 2}) {
		t.Errorf("a pass deleted %v with limits %v, want batches [2 2 1] of limit 2", deleted, limits)
	}
	for _, j := range old {
		if s := e.state(j.ID); s != "gone" {
			t.Errorf("job completed 100 minutes ago is %s, want pruned", s)
		}
	}
	for what, j := range map[string]*queue.Job{
		"job completed 10 minutes ago": recent, "job failed 100 minutes ago": failed,
		"cancelled job": cancelled, "scheduled job": scheduled, "available job": available,
	} {
		if s := e.state(j.ID); s == "gone" {
			t.Errorf("%s was pruned", what)
		}
	}

	// Much later everything finished goes, except cancelled jobs, kept
	// forever.
	e.clock.Advance(1000 * time.Hour)
	p.Wake()
	eventually(t, "the second pass to end", func() bool {
		deleted, _ := d.calls()
		return len(deleted) > 3 && deleted[len(deleted)-1] < 2
	})
	for what, j := range map[string]*queue.Job{"job completed 1000 hours ago": recent, "job failed 1000 hours ago": failed} {
		if s := e.state(j.ID); s != "gone" {
			t.Errorf("%s is %s, want pruned", what, s)
		}
	}
	for what, j := range map[string]*queue.Job{"cancelled job": cancelled, "scheduled job": scheduled, "available job": available} {
		if s := e.state(j.ID); s == "gone" {
			t.Errorf("%s was pruned", what)
		}
	}
}
