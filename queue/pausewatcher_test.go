package queue_test

import (
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// TestPauseWatcherReportsPausedQueues: the watcher learns of pauses and
// resumes made in the database within its interval, or at once on
// Refresh, and reports the queues that were resumed.
func TestPauseWatcherReportsPausedQueues(t *testing.T) {
	e := newEnv(t)
	resumed := make(chan string, 10)
	w := queue.NewPauseWatcher(queue.PauseWatcherConfig{
		Driver: e.d, Logger: discard(), Interval: 10 * time.Millisecond,
		Resumed: func(q string) { resumed <- q },
	})
	t.Cleanup(w.Stop)
	setPaused := func(q string, paused bool) {
		t.Helper()
		if err := e.d.SetQueuePaused(e.ctx, q, paused, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}

	setPaused("a", true)
	if w.Paused("a") {
		t.Fatal("a queue is paused before the watcher has read any")
	}
	w.Refresh(e.ctx)
	if !w.Paused("a") || w.Paused("b") {
		t.Fatalf("after Refresh: a paused %v, b paused %v; want a only", w.Paused("a"), w.Paused("b"))
	}

	w.Start(e.ctx)
	setPaused("b", true)
	eventually(t, "the watcher to see b paused", func() bool { return w.Paused("b") })
	setPaused("a", false)
	if q := receive(t, resumed, "a resumed queue to be reported"); q != "a" {
		t.Errorf("resumed queue %q, want a", q)
	}
	if w.Paused("a") || !w.Paused("b") {
		t.Errorf("after resuming a: a paused %v, b paused %v; want b only", w.Paused("a"), w.Paused("b"))
	}
	select {
	case q := <-resumed:
		t.Errorf("queue %q reported resumed, want only a", q)
	default:
	}
}
