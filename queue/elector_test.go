package queue_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// electorTTL is the leadership lease of the elector tests: it expires
// only when a test moves the clock, and makes the electors try every
// 100ms of real time.
const electorTTL = 300 * time.Millisecond

// leadCounter is the real driver, counting TryLead calls so that a test
// knows an elector has tried.
type leadCounter struct {
	*sqlitedriver.Driver
	calls counter
}

func (d *leadCounter) TryLead(ctx context.Context, name, id string, now time.Time, ttl time.Duration) (bool, error) {
	defer d.calls.add()
	return d.Driver.TryLead(ctx, name, id, now, ttl)
}

// changes records what an elector told its Changed callback.
type changes struct {
	mu  sync.Mutex
	got []bool
}

func (c *changes) record(leading bool) {
	c.mu.Lock()
	c.got = append(c.got, leading)
	c.mu.Unlock()
}

func (c *changes) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, v := range c.got {
		if v {
			b.WriteString("+")
		} else {
			b.WriteString("-")
		}
	}
	return b.String()
}

type testElector struct {
	*queue.Elector
	changes *changes
	logs    *logs
	driver  *leadCounter
}

func (e *env) elector(id string) testElector {
	ch, l := &changes{}, &logs{}
	d := &leadCounter{Driver: e.d}
	el := queue.NewElector(queue.ElectorConfig{
		Driver: d, Clock: e.clock, Logger: l.logger(),
		Name: queue.LeaderName, ID: id, TTL: electorTTL, Changed: ch.record,
	})
	e.t.Cleanup(el.Stop)
	return testElector{Elector: el, changes: ch, logs: l, driver: d}
}

// TestElectorTakeoverOnStop: of two electors one leads; the other takes
// over once the first stops and resigns, without the lease expiring.
func TestElectorTakeoverOnStop(t *testing.T) {
	e := newEnv(t)
	first, second := e.elector("first"), e.elector("second")
	if first.IsLeader() {
		t.Fatal("an elector leads before it starts")
	}
	first.Start(e.ctx)
	eventually(t, "the first elector to lead", first.IsLeader)
	second.Start(e.ctx)
	second.driver.calls.waitMore(t, 2, "the second elector to try twice")
	if second.IsLeader() {
		t.Fatal("the second elector leads while the first holds leadership")
	}
	first.Stop()
	if first.IsLeader() {
		t.Error("a stopped elector still reports it leads")
	}
	// The clock does not move: only the resignation lets the second lead.
	eventually(t, "the second elector to take over", second.IsLeader)
	first.Stop() // idempotent
	if got := first.changes.String(); got != "+-" {
		t.Errorf("first elector's changes %q, want gained then lost (+-)", got)
	}
	if got := second.changes.String(); got != "+" {
		t.Errorf("second elector's changes %q, want gained (+)", got)
	}
	if !strings.Contains(first.logs.String(), "became leader") || !strings.Contains(second.logs.String(), "became leader") {
		t.Errorf("no \"became leader\" line in the logs:\n%s\n%s", first.logs, second.logs)
	}
}

// TestElectorTakeoverOnExpiry: a leader that died without resigning is
// replaced once its lease expires on the clock, and not before.
func TestElectorTakeoverOnExpiry(t *testing.T) {
	e := newEnv(t)
	if ok, err := e.d.TryLead(e.ctx, queue.LeaderName, "dead", e.clock.Now(), electorTTL); err != nil || !ok {
		t.Fatalf("the dead leader's TryLead: %v, %v", ok, err)
	}
	live := e.elector("live")
	live.Start(e.ctx)
	live.driver.calls.waitMore(t, 2, "the live elector to try twice")
	if live.IsLeader() {
		t.Fatal("an elector took over before the dead leader's lease expired")
	}
	e.clock.Advance(electorTTL + time.Millisecond)
	eventually(t, "the live elector to take over", live.IsLeader)
}

// TestElectorLosesLeadership: a refused renewal ends leadership; the
// elector says so in its log and to Changed.
func TestElectorLosesLeadership(t *testing.T) {
	e := newEnv(t)
	el := e.elector("first")
	el.Start(e.ctx)
	eventually(t, "the elector to lead", el.IsLeader)
	// Take the leadership away: resign on the elector's behalf and lead as
	// another, until the other wins before the elector renews.
	eventually(t, "another to take leadership", func() bool {
		if err := e.d.Resign(e.ctx, queue.LeaderName, "first"); err != nil {
			t.Fatal(err)
		}
		ok, err := e.d.TryLead(e.ctx, queue.LeaderName, "other", e.clock.Now(), electorTTL)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	eventually(t, "the elector to lose leadership", func() bool { return !el.IsLeader() })
	if got := el.changes.String(); got != "+-" {
		t.Errorf("changes %q, want gained then lost (+-)", got)
	}
	if !strings.Contains(el.logs.String(), "no longer leader") {
		t.Errorf("no \"no longer leader\" line in the log:\n%s", el.logs)
	}
}
