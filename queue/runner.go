package queue

import (
	"sync"
	"time"
)

// runnerIdle is how long a runner goroutine waits for its next attempt
// before it exits.
const runnerIdle = 10 * time.Second

// runner runs attempts on goroutines it keeps between attempts.
//
// A new goroutine starts with the smallest stack, and an attempt's
// handler, context, hooks and tracing span grow it, copying it at each
// doubling, on every attempt. A goroutine that has run an attempt has
// grown its stack already, so the runner hands the next attempt to an
// idle one when there is one, and starts a goroutine only when there is
// none. An idle goroutine exits after runnerIdle or when the runner is
// closed.
//
// The garbage collector halves the stack of a parked goroutine that uses
// less than a quarter of it, and kiln's small heap is collected often
// (every few milliseconds under load), so an idle goroutine would lose
// its grown stack between two attempts and grow it again. It parks on a
// frame of runnerPad bytes instead, which keeps stacks of up to about
// 4 × runnerPad, enough for an attempt with a tracing span, and costs
// that much per idle goroutine.
//
// A handler therefore runs on a goroutine that may run other attempts
// later: one that locks its OS thread (runtime.LockOSThread) must unlock
// it before it returns, as the Handler documentation says.
type runner struct {
	work      chan func()
	quit      chan struct{}
	closeOnce sync.Once
}

// runnerPad is the size of the frame runner goroutines park on.
const runnerPad = 2048

func newRunner() *runner {
	return &runner{work: make(chan func()), quit: make(chan struct{})}
}

// run runs f on an idle goroutine of the runner, or on a new one.
func (r *runner) run(f func()) {
	select {
	case r.work <- f:
	default:
		go r.loop(f)
	}
}

// loop runs f, then whatever run hands it, until it has been idle for
// runnerIdle or the runner is closed.
func (r *runner) loop(f func()) {
	var idle *time.Timer
	for f != nil {
		f()
		if idle == nil {
			idle = time.NewTimer(runnerIdle)
			defer idle.Stop()
		} else {
			idle.Reset(runnerIdle)
		}
		f = r.next(idle.C)
	}
}

// next waits for the next attempt, and returns nil when there is none
// after runnerIdle or when the runner is closed. It waits on a frame of
// runnerPad bytes, which is on the stack only while the goroutine is
// parked, not while it runs an attempt.
//
//go:noinline
func (r *runner) next(idle <-chan time.Time) func() {
	var pad [runnerPad]byte
	return r.wait(&pad, idle)
}

// wait is next's select; pad is only there to be kept on the stack.
//
//go:noinline
func (r *runner) wait(pad *[runnerPad]byte, idle <-chan time.Time) func() {
	select {
	case f := <-r.work:
		pad[0] = 1
		return f
	case <-idle:
	case <-r.quit:
	}
	return nil
}

// close makes idle goroutines exit, and busy ones once their attempt
// ends. Attempts handed to run after close still run, each on a
// goroutine of its own.
func (r *runner) close() { r.closeOnce.Do(func() { close(r.quit) }) }
