// Package cpupool runs CPU-bound work on a bounded pool so that a burst of
// expensive requests cannot starve everything else in the process.
//
// A [Pool] has W workers and a short wait queue of Q slots. A task runs at
// once when a worker is free, waits in the queue when none is, and is
// refused with [ErrSaturated] — immediately, without waiting — when all W
// workers are busy and all Q queue slots are taken. Shedding load this way
// keeps latency bounded: a caller learns at once that it should come back
// later instead of piling up behind work it cannot overtake.
package cpupool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
)

// ErrSaturated is returned by [Do] when every worker is busy and the wait
// queue is full. Nothing was run; the caller may retry later.
var ErrSaturated = errors.New("cpupool: saturated: all workers busy and the wait queue is full")

// Pool is a bounded pool of CPU workers. Its zero value is not usable;
// create one with [New] or [Default]. A Pool is safe for concurrent use.
type Pool struct {
	workers int
	queue   int
	// admit holds one token per task inside the pool, running or waiting:
	// its capacity is workers+queue.
	admit chan struct{}
	// run holds one token per running task: its capacity is workers.
	run chan struct{}

	inFlight atomic.Int64
	queued   atomic.Int64
	rejected atomic.Uint64
}

// New returns a pool of workers workers with a wait queue of queue slots.
// workers ≤ 0 means runtime.GOMAXPROCS(0); queue < 0 means twice the
// number of workers, and queue == 0 means no waiting: a task is refused
// whenever every worker is busy.
func New(workers, queue int) *Pool {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if queue < 0 {
		queue = 2 * workers
	}
	return &Pool{
		workers: workers,
		queue:   queue,
		admit:   make(chan struct{}, workers+queue),
		run:     make(chan struct{}, workers),
	}
}

// Default returns a pool of runtime.GOMAXPROCS(0) workers with a wait
// queue twice that size.
func Default() *Pool { return New(0, -1) }

// Stats is a snapshot of a pool's counters, for metrics.
type Stats struct {
	Workers   int    // the number of workers (the most tasks run at once)
	QueueSize int    // the number of wait-queue slots
	InFlight  int64  // tasks running now, including those whose caller gave up
	Queued    int64  // callers waiting for a worker now
	Rejected  uint64 // tasks refused with ErrSaturated since the pool was made
}

// Stats returns the pool's counters. The fields are read one by one, so
// under load they need not add up exactly.
func (p *Pool) Stats() Stats {
	return Stats{
		Workers:   p.workers,
		QueueSize: p.queue,
		InFlight:  p.inFlight.Load(),
		Queued:    p.queued.Load(),
		Rejected:  p.rejected.Load(),
	}
}

// PanicError is returned by [Do] when the task panicked. The panic is
// contained: it does not take the process down.
type PanicError struct {
	Value any
}

func (e *PanicError) Error() string { return fmt.Sprintf("cpupool: task panicked: %v", e.Value) }

// Do runs fn on p and returns its result.
//
// If every worker is busy and the wait queue is full, Do returns
// [ErrSaturated] at once without running fn. If fn has to wait for a
// worker and ctx is done first, Do returns ctx.Err() and gives its queue
// slot back; fn never runs. Waiting callers are not served in strict
// arrival order.
//
// Once fn has started it is not interrupted — Go cannot pre-empt a
// function from outside, and fn takes no context — so if ctx is done
// while fn runs, Do returns ctx.Err() at once, fn keeps its worker until
// it returns, and its result is discarded. A task that must stop early
// should watch a context of its own.
func Do[T any](ctx context.Context, p *Pool, fn func() T) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	select {
	case p.admit <- struct{}{}:
	default:
		p.rejected.Add(1)
		return zero, ErrSaturated
	}
	p.queued.Add(1)
	select {
	case p.run <- struct{}{}:
		p.queued.Add(-1)
	case <-ctx.Done():
		p.queued.Add(-1)
		<-p.admit
		return zero, ctx.Err()
	}
	p.inFlight.Add(1)

	type result struct {
		v   T
		err error
	}
	// Buffered, so that the task can finish and leave even when nobody
	// is left to receive its result.
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() {
			if v := recover(); v != nil {
				res = result{err: &PanicError{Value: v}}
			}
			p.inFlight.Add(-1)
			<-p.run
			<-p.admit
			done <- res
		}()
		res.v = fn()
	}()
	select {
	case res := <-done:
		return res.v, res.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
