package images

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCPUGateBounds: however many callers arrive, no more than the
// gate's slots run at once, and every caller runs.
func TestCPUGateBounds(t *testing.T) {
	t.Parallel()
	const slots, callers = 2, 6
	g := newCPUGate(slots)
	var active, peak, arrived, ran atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			arrived.Add(1)
			err := g.run(context.Background(), func() error {
				n := active.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-release
				active.Add(-1)
				ran.Add(1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	waitUntil(t, "every caller has arrived and the slots are taken", func() bool {
		return arrived.Load() == callers && active.Load() == slots
	})
	// Give the callers that should be waiting every chance to get in.
	for range 100 {
		runtime.Gosched()
	}
	if n := active.Load(); n != slots {
		t.Errorf("%d running with %d slots", n, slots)
	}
	close(release)
	wg.Wait()
	if peak.Load() != slots || ran.Load() != callers {
		t.Errorf("peak %d (want %d), ran %d of %d", peak.Load(), slots, ran.Load(), callers)
	}
}

// TestCPUGateLowersPriority: fn runs on a thread of nice 10 (or more, if
// the process had more) on Linux, and the caller's thread keeps its
// priority.
func TestCPUGateLowersPriority(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("thread priorities are lowered on Linux only")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := threadNice()
	if err != nil {
		t.Fatal(err)
	}
	var inside int
	if err := newCPUGate(1).run(context.Background(), func() error {
		var err error
		inside, err = threadNice()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	after, _ := threadNice()
	if inside != max(before, thumbnailNice) || after != before {
		t.Errorf("nice %d before, %d inside the gate, %d after; want %d inside and the caller's unchanged", before, inside, after, thumbnailNice)
	}
}

// TestCPUGatePanicAndCancel: a panic in fn is an error, not a crash, and
// frees its slot; a caller whose context ends while it waits for a slot
// gets the context's cause without running.
func TestCPUGatePanicAndCancel(t *testing.T) {
	t.Parallel()
	g := newCPUGate(1)
	err := g.run(context.Background(), func() error { panic("bad pixels") })
	if err == nil || !strings.Contains(err.Error(), "panic: bad pixels") {
		t.Fatalf("panic gave %v", err)
	}
	hold := make(chan struct{})
	held := make(chan struct{})
	go func() {
		_ = g.run(context.Background(), func() error { close(held); <-hold; return nil })
	}()
	<-held
	cause := errors.New("job cancelled")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	ran := false
	if err := g.run(ctx, func() error { ran = true; return nil }); !errors.Is(err, cause) || ran {
		t.Errorf("cancelled wait: %v, ran %v", err, ran)
	}
	close(hold)
}

// waitUntil polls cond until it holds, failing after 30s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
