package queue

import (
	"context"
	"sync"
)

// startStop is the lifecycle every background component of a [Client]
// shares (the leader elector, promoter, rescuer, pruner, heartbeat,
// cancellation watcher and pause watcher): start runs the component's loop
// on a goroutine of its own, Stop cancels the loop's context and waits for
// the goroutine to end.
//
// A component runs at most once: a second start does nothing, and so does
// a start after Stop. Stop before start returns at once (and the
// component never starts); Stop is idempotent and safe to call from
// several goroutines, every call returning once the loop has ended.
type startStop struct {
	mu      sync.Mutex
	stopped bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// start runs loop on a new goroutine with a context derived from ctx that
// Stop cancels.
func (s *startStop) start(ctx context.Context, loop func(ctx context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.done != nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	done := make(chan struct{})
	s.done = done
	go func() {
		defer close(done)
		loop(ctx)
	}()
}

// Stop ends the loop and waits until it has returned.
func (s *startStop) Stop() {
	s.mu.Lock()
	s.stopped = true
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if done == nil {
		return
	}
	cancel()
	<-done
}

// wakeChan is a component's "look now" signal: a buffered channel of one,
// so that a wake-up sent while the component is busy is kept for its next
// turn and any number of them coalesce into one.
type wakeChan chan struct{}

func newWakeChan() wakeChan { return make(wakeChan, 1) }

// wake signals without blocking.
func (w wakeChan) wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}
