package queue

import (
	"context"
	"log/slog"
	"time"

	"github.com/kilnhq/kiln/queue/internal/loop"
)

// cancelWatcherDriver is the part of [Driver] the cancellation watcher
// uses.
type cancelWatcherDriver interface {
	CancelRequested(ctx context.Context, ids []int64) ([]int64, error)
}

// cancelWatcherConfig is what a cancellation watcher needs.
type cancelWatcherConfig struct {
	Driver cancelWatcherDriver
	Logger *slog.Logger
	// Interval is how often running jobs are checked (the client's
	// CancelCheckInterval).
	Interval time.Duration
	// Attempts returns the attempts to check: every attempt the client
	// holds.
	Attempts func() []*attempt
}

// cancelWatcher cancels the running attempts whose cancellation was
// requested where this client could not see it (by another client, or by
// CancelTx, whose commit no client sees): every Interval it asks which of
// this client's running jobs are flagged and cancels their attempts with
// errCancelRequested. Cancel on this client cancels the attempt at once
// and does not wait for it.
//
// A client with queues runs one. It is stopped after the completer has
// written the last outcomes, before the elector resigns.
type cancelWatcher struct {
	startStop
	cfg cancelWatcherConfig
}

func newCancelWatcher(cfg cancelWatcherConfig) *cancelWatcher {
	return &cancelWatcher{cfg: cfg}
}

// Start starts watching; the first check is after Interval.
func (w *cancelWatcher) Start(ctx context.Context) { w.start(ctx, w.run) }

func (w *cancelWatcher) run(ctx context.Context) {
	errs := newErrorLog(w.cfg.Logger, "check job cancellations")
	loop.Every(ctx, w.cfg.Interval, nil, func() { w.check(ctx, errs) })
}

// check cancels the attempts whose cancellation was requested, once.
func (w *cancelWatcher) check(ctx context.Context, errs *errorLog) {
	list := w.cfg.Attempts()
	if len(list) == 0 {
		return
	}
	ids := make([]int64, len(list))
	byID := make(map[int64]*attempt, len(list))
	for i, a := range list {
		ids[i] = a.job.ID
		byID[a.job.ID] = a
	}
	cancelled, err := w.cfg.Driver.CancelRequested(ctx, ids)
	if err != nil {
		if ctx.Err() == nil {
			errs.fail(err)
		}
		return
	}
	errs.ok()
	for _, id := range cancelled {
		if a := byID[id]; a != nil {
			a.cancel(errCancelRequested)
		}
	}
}
