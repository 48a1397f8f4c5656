package queue

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// goid returns the calling goroutine's id, read from its stack trace's
// first line ("goroutine 42 [running]:"), or -1 if it cannot be read. It
// runs on the runner's goroutines, where a test cannot fail at once.
func goid() int {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	if len(f) < 2 {
		return -1
	}
	id, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return -1
	}
	return id
}

// An attempt goes to an idle goroutine when there is one, and to a new
// goroutine when all are busy.
func TestRunnerReusesIdleGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunner()
		defer r.close()
		ids := make(chan int, 3)
		r.run(func() { ids <- goid() })
		first := <-ids
		if first < 0 {
			t.Fatal("cannot read goroutine ids")
		}
		synctest.Wait() // the goroutine is parked, idle
		r.run(func() { ids <- goid() })
		if second := <-ids; second != first {
			t.Errorf("second attempt ran on goroutine %d, want the idle %d", second, first)
		}
		synctest.Wait()

		// Two at once: the idle goroutine takes one, a new one the other.
		release := make(chan struct{})
		r.run(func() { ids <- goid(); <-release })
		r.run(func() { ids <- goid(); <-release })
		a, b := <-ids, <-ids
		if a == b || (a != first && b != first) {
			t.Errorf("two attempts at once ran on goroutines %d and %d, want %d and a new one", a, b, first)
		}
		close(release)
	})
}

// An idle goroutine exits after runnerIdle; the next attempt gets a new
// one. synctest.Test fails if any goroutine is left when it returns, so
// it also checks that close ends every idle goroutine.
func TestRunnerIdleGoroutinesExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRunner()
		ids := make(chan int, 1)
		r.run(func() { ids <- goid() })
		first := <-ids
		time.Sleep(runnerIdle + time.Second)
		synctest.Wait()
		r.run(func() { ids <- goid() })
		if second := <-ids; second == first {
			t.Errorf("attempt after %s idle ran on the same goroutine %d", runnerIdle, first)
		}
		synctest.Wait()
		r.close()
		r.close() // a second close is harmless
		var wg sync.WaitGroup
		wg.Add(1)
		r.run(wg.Done) // after close: still runs
		wg.Wait()
	})
}

// stackHungry uses about depth KiB of stack.
//
//go:noinline
func stackHungry(depth int) byte {
	var b [1024]byte
	b[depth%len(b)] = byte(depth)
	if depth <= 1 {
		return b[0]
	}
	return stackHungry(depth-1) + b[depth%len(b)]
}

// BenchmarkAttemptGoroutine compares a new goroutine per attempt with the
// runner for attempts that need a few KiB of stack (as one with a tracing
// span does), with the garbage collector running as often as it does in a
// busy engine.
func BenchmarkAttemptGoroutine(b *testing.B) {
	for _, bc := range []struct {
		name string
		run  func(r *runner, f func())
	}{
		{"go", func(_ *runner, f func()) { go f() }},
		{"runner", (*runner).run},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newRunner()
			defer r.close()
			var wg sync.WaitGroup
			f := func() { stackHungry(4); wg.Done() }
			for i := 0; b.Loop(); i++ {
				wg.Add(1)
				bc.run(r, f)
				wg.Wait()
				if i%1000 == 999 {
					runtime.GC()
				}
			}
		})
	}
}
