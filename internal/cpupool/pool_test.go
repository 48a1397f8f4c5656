package cpupool

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor yields until cond holds; it fails the test only if cond never
// holds, so it makes no assumption about scheduling speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		runtime.Gosched()
	}
}

// blocker is a task that reports when it starts and then holds its worker
// until release is closed.
type blocker struct {
	started chan struct{}
	release chan struct{}
}

func newBlocker() blocker {
	return blocker{started: make(chan struct{}, 64), release: make(chan struct{})}
}

func (b blocker) task() int {
	b.started <- struct{}{}
	<-b.release
	return 1
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	s := Default().Stats()
	w := runtime.GOMAXPROCS(0)
	if s.Workers != w || s.QueueSize != 2*w {
		t.Errorf("default pool %+v, want %d workers and %d queue slots", s, w, 2*w)
	}
	if s := New(3, 0).Stats(); s.Workers != 3 || s.QueueSize != 0 {
		t.Errorf("New(3, 0): %+v", s)
	}
}

func TestDoReturnsResult(t *testing.T) {
	t.Parallel()
	p := New(2, 2)
	v, err := Do(context.Background(), p, func() string { return "ok" })
	if err != nil || v != "ok" {
		t.Fatalf("Do: %q %v", v, err)
	}
}

// TestBoundsWorkersQueueAndRejects holds every worker busy, fills the wait
// queue, and checks that the next task is refused at once, that no more
// than W tasks ever run together, and that the queued tasks run once
// workers free up.
func TestBoundsWorkersQueueAndRejects(t *testing.T) {
	t.Parallel()
	const workers, queue = 3, 2
	p := New(workers, queue)
	b := newBlocker()
	var cur, peak atomic.Int64
	task := func() int {
		n := cur.Add(1)
		for {
			m := peak.Load()
			if n <= m || peak.CompareAndSwap(m, n) {
				break
			}
		}
		defer cur.Add(-1)
		return b.task()
	}

	var wg sync.WaitGroup
	errs := make(chan error, workers+queue)
	for range workers + queue {
		wg.Go(func() {
			v, err := Do(context.Background(), p, task)
			if err == nil && v != 1 {
				err = errors.New("wrong result")
			}
			errs <- err
		})
	}
	for range workers {
		<-b.started
	}
	waitFor(t, "the wait queue fills", func() bool { return p.Stats().Queued == queue })
	if s := p.Stats(); s.InFlight != workers {
		t.Fatalf("stats %+v, want %d in flight", s, workers)
	}

	// Full: refused immediately, and fn never runs.
	ran := false
	if _, err := Do(context.Background(), p, func() int { ran = true; return 0 }); !errors.Is(err, ErrSaturated) {
		t.Fatalf("Do on a saturated pool: %v, want ErrSaturated", err)
	}
	if ran {
		t.Fatal("a refused task ran")
	}
	if s := p.Stats(); s.Rejected != 1 {
		t.Errorf("rejected %d, want 1", s.Rejected)
	}

	close(b.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Do: %v", err)
		}
	}
	if got := peak.Load(); got != workers {
		t.Errorf("at most %d tasks ran at once, want exactly %d", got, workers)
	}
	if s := p.Stats(); s.InFlight != 0 || s.Queued != 0 {
		t.Errorf("stats after drain %+v", s)
	}
}

// TestCancelWhileQueued checks that a waiting caller whose context ends
// gets ctx.Err() and gives its queue slot back without the task running.
func TestCancelWhileQueued(t *testing.T) {
	t.Parallel()
	p := New(1, 1)
	b := newBlocker()
	holder := make(chan error, 1)
	go func() {
		_, err := Do(context.Background(), p, b.task)
		holder <- err
	}()
	<-b.started

	ctx, cancel := context.WithCancel(context.Background())
	waiter := make(chan error, 1)
	var ran atomic.Bool
	go func() {
		_, err := Do(ctx, p, func() int { ran.Store(true); return 0 })
		waiter <- err
	}()
	waitFor(t, "the waiter queues", func() bool { return p.Stats().Queued == 1 })
	if _, err := Do(context.Background(), p, b.task); !errors.Is(err, ErrSaturated) {
		t.Fatalf("queue full: %v, want ErrSaturated", err)
	}
	cancel()
	if err := <-waiter; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v, want context.Canceled", err)
	}
	if s := p.Stats(); s.Queued != 0 {
		t.Fatalf("queued %d after cancel", s.Queued)
	}

	// The slot is free again: a new caller queues instead of being
	// refused, and runs once the worker frees up.
	second := make(chan error, 1)
	go func() {
		v, err := Do(context.Background(), p, func() int { return 7 })
		if err == nil && v != 7 {
			err = errors.New("wrong result")
		}
		second <- err
	}()
	waitFor(t, "the second waiter queues", func() bool { return p.Stats().Queued == 1 })
	close(b.release)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Error("the cancelled task ran")
	}
	if s := p.Stats(); s.Rejected != 1 {
		t.Errorf("rejected %d, want 1", s.Rejected)
	}
}

// TestCancelWhileRunning checks that a running task is not interrupted:
// the caller gets ctx.Err() at once, the task keeps its worker until it
// returns, and its result is discarded.
func TestCancelWhileRunning(t *testing.T) {
	t.Parallel()
	p := New(1, 0)
	b := newBlocker()
	finished := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := Do(ctx, p, func() int {
			defer close(finished)
			return b.task()
		})
		got <- err
	}()
	<-b.started
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do: %v, want context.Canceled", err)
	}
	// The abandoned task still holds the only worker.
	if _, err := Do(context.Background(), p, func() int { return 0 }); !errors.Is(err, ErrSaturated) {
		t.Fatalf("worker freed before the task returned: %v", err)
	}
	close(b.release)
	<-finished
	waitFor(t, "the worker frees up", func() bool { return p.Stats().InFlight == 0 })
	if v, err := Do(context.Background(), p, func() int { return 2 }); err != nil || v != 2 {
		t.Fatalf("after the task returned: %d %v", v, err)
	}
}

func TestCancelledBeforeCall(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Do(ctx, New(1, 1), func() int { return 1 }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do: %v", err)
	}
}

func TestPanicIsContained(t *testing.T) {
	t.Parallel()
	p := New(1, 0)
	_, err := Do(context.Background(), p, func() int { panic("boom") })
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("Do: %v, want a PanicError", err)
	}
	if v, err := Do(context.Background(), p, func() int { return 3 }); err != nil || v != 3 {
		t.Fatalf("pool unusable after a panic: %d %v", v, err)
	}
}
