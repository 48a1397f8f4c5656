package queue_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/queuetest"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// The background components' tests run each component alone on a fresh
// SQLite database, with a clock that moves only when told to. The
// components' loops tick in real time on short intervals; every wait is a
// poll or a receive bounded by waitFor.

const waitFor = 10 * time.Second

var epoch = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// env is one component test's database, clock and job set-up.
type env struct {
	t      *testing.T
	ctx    context.Context
	d      *sqlitedriver.Driver
	clock  *queuetest.Clock
	client *queue.Client // inserts and cancels; never started
}

func newEnv(t *testing.T) *env {
	t.Helper()
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	t.Cleanup(cancel)
	d, err := sqlitedriver.Open(filepath.Join(t.TempDir(), "kiln.db"), sqlitedriver.Options{})
	d = queuetest.Migrated(t, d, err)
	clock := queuetest.NewClock(epoch)
	c, err := queue.New(queue.Config{Driver: d, Clock: clock, AllowUnknownKinds: true})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, d: d, clock: clock, client: c}
}

// insert inserts a job into q with maxAttempts attempts, due after runIn.
func (e *env) insert(q string, maxAttempts int, runIn time.Duration) *queue.Job {
	e.t.Helper()
	res, err := e.client.Insert(e.ctx, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{
		Queue: q, RunIn: runIn, Retry: &queue.RetryPolicy{MaxAttempts: maxAttempts},
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Job
}

var tokens atomic.Int64

// claim claims the next job of q as worker by, with a lease of lease.
func (e *env) claim(q, by string, lease time.Duration) *queue.Job {
	e.t.Helper()
	now := e.clock.Now()
	jobs, err := e.d.Claim(e.ctx, queue.ClaimParams{
		Queue: q, Limit: 1, Now: now, LeaseUntil: now.Add(lease), Token: tokens.Add(1), ClientID: by,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(jobs) != 1 {
		e.t.Fatalf("claim of %s returned %d jobs, want 1", q, len(jobs))
	}
	return jobs[0]
}

// start inserts and claims a job of q, running under a lease of an hour.
func (e *env) start(q string, maxAttempts int) *queue.Job {
	e.t.Helper()
	e.insert(q, maxAttempts, 0)
	return e.claim(q, "worker", time.Hour)
}

// finish records the outcome state of a claimed job's attempt now.
func (e *env) finish(j *queue.Job, state queue.JobState) {
	e.t.Helper()
	now := e.clock.Now()
	o := queue.Outcome{Lease: queue.Lease{ID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}, State: state, At: now, RunAt: now}
	if !state.Final() {
		o.RunAt = now.Add(time.Minute)
	}
	applied, err := e.d.Finish(e.ctx, []queue.Outcome{o})
	if err != nil || len(applied) != 1 || !applied[0] {
		e.t.Fatalf("finish job %d as %s: applied %v, err %v", j.ID, state, applied, err)
	}
}

// get returns a job, or nil once it is gone.
func (e *env) get(id int64) *queue.Job {
	e.t.Helper()
	j, err := e.client.Get(e.ctx, id)
	if err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			return nil
		}
		e.t.Fatal(err)
	}
	return j
}

// state returns a job's state, or "gone".
func (e *env) state(id int64) queue.JobState {
	e.t.Helper()
	if j := e.get(id); j != nil {
		return j.State
	}
	return "gone"
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// receive returns the next value of ch, failing the test after waitFor.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// counter counts calls and lets a test wait for more of them.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// waitMore waits until n more calls have been counted from now.
func (c *counter) waitMore(t *testing.T, n int, what string) {
	t.Helper()
	c.waitTotal(t, c.get()+n, what)
}

// waitTotal waits until n calls in all have been counted.
func (c *counter) waitTotal(t *testing.T, n int, what string) {
	t.Helper()
	eventually(t, what, func() bool { return c.get() >= n })
}

// leader is an IsLeader answer a test can change, counting the questions.
type leader struct {
	counter
	mu      sync.Mutex
	leading bool
}

func (l *leader) set(v bool) {
	l.mu.Lock()
	l.leading = v
	l.mu.Unlock()
}

func (l *leader) IsLeader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.add() // after reading: an answer counted is an answer given
	return l.leading
}

// logs is a logger whose lines a test can read.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logs) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
