package images

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// thumbnailNice is the nice value of the threads that decode and resize
// images, on Linux.
const thumbnailNice = 10

// DefaultMaxDecoding is the default of Options.MaxDecoding: half the
// CPUs the Go runtime may use, at least one.
func DefaultMaxDecoding() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// cpuGate bounds the CPU-bound part of thumbnails in one process:
// decoding the original and resizing it into the variants. It holds a
// slot per image being worked on, so that however many image.thumbnail
// jobs run at once (the images queue's workers), at most this many
// images are decoded at a time: the rest wait for a slot before they
// read a byte. That bounds both the CPUs they take from the API and the
// memory they hold (a decoded 12 MP photo is about 18 MB, a 50 MP one
// about 200 MB).
type cpuGate struct{ slots chan struct{} }

// newCPUGate returns a gate of n slots (at least one).
func newCPUGate(n int) *cpuGate { return &cpuGate{slots: make(chan struct{}, max(1, n))} }

// run calls fn once a slot is free, on an OS thread of its own whose
// scheduling priority is lowered (see lowerThreadPriority), and returns
// its error; a panic in fn is returned as an error. It gives up waiting
// for a slot when ctx is done.
func (g *cpuGate) run(ctx context.Context, fn func() error) error {
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-g.slots }()
	done := make(chan error, 1)
	go func() {
		// The goroutine ends locked to its thread, so the thread ends
		// with it, and its lowered priority never serves other
		// goroutines. The runtime creates no thread from a locked one, so
		// none inherits that priority either.
		runtime.LockOSThread()
		lowerThreadPriority()
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("thumbnail: panic: %v\n%s", p, debug.Stack())
			}
		}()
		done <- fn()
	}()
	return <-done
}
