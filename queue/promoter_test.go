package queue_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// promoted collects the queues a promoter reports.
type promoted struct {
	mu     sync.Mutex
	queues map[string]int
}

func (p *promoted) record(q string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queues == nil {
		p.queues = map[string]int{}
	}
	p.queues[q]++
}

func (p *promoted) names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for q := range p.queues {
		out = append(out, q)
	}
	slices.Sort(out)
	return out
}

func (e *env) promoter(interval time.Duration, isLeader func() bool, rec *promoted) *queue.Promoter {
	p := queue.NewPromoter(queue.PromoterConfig{
		Driver: e.d, Clock: e.clock, Logger: discard(),
		Interval: interval, IsLeader: isLeader, Promoted: rec.record,
	})
	e.t.Cleanup(p.Stop)
	return p
}

// TestPromoterPromotesDueJobs: scheduled and retryable jobs whose time
// has come become available, and their queues are reported; a job due
// later stays scheduled until the clock reaches it, and the promoter
// finds it then by itself.
func TestPromoterPromotesDueJobs(t *testing.T) {
	e := newEnv(t)
	a := e.insert("a", 3, time.Minute)
	b := e.insert("b", 3, 30*time.Second)
	later := e.insert("later", 3, time.Hour)
	failed := e.start("r", 3)
	e.finish(failed, queue.StateRetryable) // due in a minute
	e.clock.Advance(2 * time.Minute)

	rec := &promoted{}
	e.promoter(20*time.Millisecond, func() bool { return true }, rec).Start(e.ctx)
	for _, j := range []*queue.Job{a, b, failed} {
		eventually(t, "a due job to be promoted", func() bool { return e.state(j.ID) == queue.StateAvailable })
	}
	eventually(t, "the promoted queues to be reported", func() bool { return len(rec.names()) >= 3 })
	if got := rec.names(); !slices.Equal(got, []string{"a", "b", "r"}) {
		t.Errorf("promoted queues %v, want [a b r]", got)
	}
	if s := e.state(later.ID); s != queue.StateScheduled {
		t.Errorf("job due in an hour is %s, want scheduled", s)
	}

	e.clock.Advance(time.Hour)
	eventually(t, "the later job to be promoted", func() bool { return e.state(later.ID) == queue.StateAvailable })
	eventually(t, "its queue to be reported", func() bool { return len(rec.names()) == 4 })
}

// TestPromoterOnlyWhileLeader: a promoter that does not lead promotes
// nothing; once it leads, Wake makes it promote at once, long before its
// interval.
func TestPromoterOnlyWhileLeader(t *testing.T) {
	e := newEnv(t)
	due := e.insert("q", 3, time.Minute)
	e.clock.Advance(2 * time.Minute)

	l := &leader{}
	rec := &promoted{}
	p := e.promoter(time.Hour, l.IsLeader, rec)
	p.Start(e.ctx)
	l.waitTotal(t, 1, "the first pass") // at once, at start
	p.Wake()
	l.waitTotal(t, 2, "the pass Wake asked for")
	if s := e.state(due.ID); s != queue.StateScheduled {
		t.Fatalf("a promoter that does not lead made a job %s", s)
	}
	if got := rec.names(); len(got) != 0 {
		t.Fatalf("a promoter that does not lead reported %v", got)
	}

	l.set(true)
	p.Wake()
	eventually(t, "the due job to be promoted", func() bool { return e.state(due.ID) == queue.StateAvailable })
	eventually(t, "its queue to be reported", func() bool { return slices.Equal(rec.names(), []string{"q"}) })
}
