package queue

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnhq/kiln/queue/internal/loop"
)

// pauseWatcherDriver is the part of [Driver] the pause watcher uses.
type pauseWatcherDriver interface {
	PausedQueues(ctx context.Context) ([]string, error)
}

// pauseWatcherConfig is what a pause watcher needs.
type pauseWatcherConfig struct {
	Driver pauseWatcherDriver
	Logger *slog.Logger
	// Interval is how often the paused queues are read (the client's
	// PollInterval).
	Interval time.Duration
	// Resumed, if set, is called with every queue that a refresh found
	// no longer paused, so that its producer claims at once.
	Resumed func(queue string)
}

// pauseWatcher knows which queues are paused, so that a pause or resume
// made by any process takes effect in this client within Interval. The
// client also refreshes it itself when it starts (before its producers
// claim) and after its own Pause and Resume, which thus take effect here
// at once. Until the first refresh no queue is paused.
//
// A client with queues runs one. It is stopped after the completer has
// written the last outcomes, before the elector resigns.
type pauseWatcher struct {
	startStop
	cfg    pauseWatcherConfig
	paused atomic.Pointer[map[string]bool]
	// mu serializes refreshes: a poll that read before a pause committed
	// must not store its stale answer after the refresh Pause makes once
	// it has, or a job of the paused queue could be claimed.
	mu sync.Mutex
}

func newPauseWatcher(cfg pauseWatcherConfig) *pauseWatcher {
	w := &pauseWatcher{cfg: cfg}
	w.paused.Store(&map[string]bool{})
	return w
}

// Paused reports whether queue was paused at the last refresh.
func (w *pauseWatcher) Paused(queue string) bool { return (*w.paused.Load())[queue] }

// Start starts refreshing every Interval; the first refresh is after
// Interval.
func (w *pauseWatcher) Start(ctx context.Context) { w.start(ctx, w.run) }

func (w *pauseWatcher) run(ctx context.Context) {
	loop.Every(ctx, w.cfg.Interval, nil, func() { w.Refresh(ctx) })
}

// Refresh reads the paused queues now and tells Resumed about those no
// longer paused. A failed read keeps the last answer.
func (w *pauseWatcher) Refresh(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	names, err := w.cfg.Driver.PausedQueues(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.cfg.Logger.Debug("read paused queues", "err", err)
		}
		return
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	old := *w.paused.Swap(&m)
	if w.cfg.Resumed == nil {
		return
	}
	for name := range old {
		if !m[name] {
			w.cfg.Resumed(name)
		}
	}
}
