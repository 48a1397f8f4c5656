package queue

import (
	"context"
	"log/slog"
	"time"

	"github.com/kilnhq/kiln/queue/internal/loop"
)

// heartbeatDriver is the part of [Driver] the heartbeat uses.
type heartbeatDriver interface {
	ExtendLeases(ctx context.Context, leases []Lease, until time.Time) (held []bool, err error)
}

// heartbeatConfig is what a heartbeat needs.
type heartbeatConfig struct {
	Driver heartbeatDriver
	Clock  Clock
	Logger *slog.Logger
	// Interval is how often leases are extended (the client's
	// HeartbeatInterval), LeaseDuration by how much: each beat moves them
	// to now+LeaseDuration.
	Interval      time.Duration
	LeaseDuration time.Duration
	// Attempts returns the attempts whose leases to keep: every attempt
	// the client holds, including those whose outcome is not yet written.
	Attempts func() []*attempt
}

// heartbeat keeps the leases of this client's running attempts alive, so
// that no rescuer takes their jobs while they run. Every Interval it
// extends them all in one write; an attempt whose lease turns out lost
// (the job was rescued, or handed to another worker) is cancelled with
// errLeaseLost, unless its outcome is already decided.
//
// A client with queues runs one. It is stopped after the completer has
// written the last outcomes, so that no lease expires while an outcome
// waits to be written.
type heartbeat struct {
	startStop
	cfg heartbeatConfig
}

func newHeartbeat(cfg heartbeatConfig) *heartbeat {
	return &heartbeat{cfg: cfg}
}

// Start starts beating; the first beat is after Interval.
func (h *heartbeat) Start(ctx context.Context) { h.start(ctx, h.run) }

func (h *heartbeat) run(ctx context.Context) {
	errs := newErrorLog(h.cfg.Logger, "extend job leases")
	loop.Every(ctx, h.cfg.Interval, nil, func() { h.beat(ctx, errs) })
}

// beat extends the leases once.
func (h *heartbeat) beat(ctx context.Context, errs *errorLog) {
	list := h.cfg.Attempts()
	if len(list) == 0 {
		return
	}
	leases := make([]Lease, len(list))
	for i, a := range list {
		leases[i] = a.job.lease()
	}
	held, err := h.cfg.Driver.ExtendLeases(ctx, leases, h.cfg.Clock.Now().Add(h.cfg.LeaseDuration))
	if err != nil {
		if ctx.Err() == nil {
			errs.fail(err)
		}
		return
	}
	errs.ok()
	for i, ok := range held {
		if !ok && !list[i].finished.Load() {
			h.cfg.Logger.Warn("job lease lost; cancelling the attempt", "job_id", leases[i].ID, "attempt", leases[i].Attempt)
			list[i].cancel(errLeaseLost)
		}
	}
}
