package queue

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestStartStop: start runs the loop once, however often it is called;
// Stop cancels the loop's context and returns only once the loop has
// returned, from every caller; a start after Stop does nothing, and Stop
// before start returns at once and keeps the loop from ever running.
func TestStartStop(t *testing.T) {
	t.Parallel()
	var never startStop
	never.Stop()
	never.start(context.Background(), func(context.Context) { t.Error("a loop stopped before start ran") })
	never.Stop()

	var s startStop

	runs := make(chan struct{}, 10)
	var returned sync.WaitGroup
	returned.Add(1)
	ended := false
	loop := func(ctx context.Context) {
		defer returned.Done()
		runs <- struct{}{}
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond) // a loop slow to wind down
		ended = true
	}
	s.start(context.Background(), loop)
	s.start(context.Background(), loop)
	select {
	case <-runs:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not start")
	}

	var stops sync.WaitGroup
	for range 3 {
		stops.Go(func() {
			s.Stop()
			if !ended {
				t.Error("Stop returned before the loop did")
			}
		})
	}
	stops.Wait()
	returned.Wait()
	s.start(context.Background(), loop)
	s.Stop()
	if len(runs) != 0 {
		t.Errorf("the loop ran %d more times, want once in all", len(runs))
	}
}
