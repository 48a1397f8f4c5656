package queue

import (
	"context"
	"log/slog"
	"time"

	"github.com/kilnhq/kiln/queue/internal/loop"
)

// rescueBatch caps how many expired leases one pass of the rescuer
// handles; the rest wait for the next pass.
const rescueBatch = 1000

// rescuerDriver is the part of [Driver] the rescuer uses.
type rescuerDriver interface {
	ExpiredLeases(ctx context.Context, now time.Time, limit int) ([]*Job, error)
	Finish(ctx context.Context, outcomes []Outcome) (applied []bool, err error)
}

// rescuerConfig is what a rescuer needs.
type rescuerConfig struct {
	Driver rescuerDriver
	Clock  Clock
	Logger *slog.Logger
	// Interval is how often the rescuer looks for expired leases (the
	// client's RescueInterval).
	Interval time.Duration
	// IsLeader tells whether this client leads; the rescuer works only
	// while it does.
	IsLeader func() bool
	// Rescued, if set, is called after a pass that returned jobs, with an
	// [EventRescued] for each, so that the client emits them and wakes
	// its producers and promoter.
	Rescued func([]Event)
}

// rescuer returns the jobs whose worker died to the queue: a running job
// whose lease expired becomes retryable, or failed when it has no attempts
// left, or cancelled when its cancellation was requested. While this
// client leads it looks every Interval, and at once on Wake (leadership
// was gained).
//
// Every started client runs one. It is stopped after the completer has
// written the last outcomes, before the elector resigns.
type rescuer struct {
	startStop
	cfg     rescuerConfig
	wakeups wakeChan
}

func newRescuer(cfg rescuerConfig) *rescuer {
	return &rescuer{cfg: cfg, wakeups: newWakeChan()}
}

// Start starts the rescuer; its first pass is after Interval or Wake.
func (r *rescuer) Start(ctx context.Context) { r.start(ctx, r.run) }

// Wake makes the rescuer look for expired leases now. It never blocks and
// may be called before Start.
func (r *rescuer) Wake() { r.wakeups.wake() }

func (r *rescuer) run(ctx context.Context) {
	loop.Every(ctx, r.cfg.Interval, r.wakeups, whileLeader(r.cfg.IsLeader, func() {
		r.rescue(ctx, r.cfg.Clock.Now())
	}))
}

// rescue handles the leases that expired before now.
func (r *rescuer) rescue(ctx context.Context, now time.Time) {
	jobs, err := r.cfg.Driver.ExpiredLeases(ctx, now, rescueBatch)
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("find expired leases", "err", err)
		}
		return
	}
	if len(jobs) == 0 {
		return
	}
	outcomes := make([]Outcome, len(jobs))
	for i, j := range jobs {
		outcomes[i] = rescueOutcome(j, now)
	}
	applied, err := r.cfg.Driver.Finish(ctx, outcomes)
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("rescue jobs", "err", err)
		}
		return
	}
	var events []Event
	for i, ok := range applied {
		if !ok {
			continue
		}
		j := snapshot(jobs[i])
		applyOutcome(j, outcomes[i])
		events = append(events, Event{Kind: EventRescued, Job: j, Err: errLeaseLost, At: now})
	}
	if len(events) > 0 {
		r.cfg.Logger.Warn("rescued jobs whose worker stopped heartbeating", "jobs", len(events))
		if r.cfg.Rescued != nil {
			r.cfg.Rescued(events)
		}
	}
}

// rescueOutcome is the outcome of j, whose lease expired before now. It
// applies only if the lease is still expired when written, so that a
// heartbeat that just landed wins.
func rescueOutcome(j *Job, now time.Time) Outcome {
	ae := &AttemptError{Attempt: j.Attempt, At: now, Error: "lease expired: the worker " + j.AttemptedBy + " stopped heartbeating (crashed or cut off)"}
	o := Outcome{Lease: j.lease(), At: now, RunAt: now, Error: ae, ExpiredBefore: now}
	switch {
	case j.CancelRequested:
		// Finish refuses to make it retryable; a request that lands
		// after this read is seen on the next pass.
		o.State = StateCancelled
	case j.Attempt >= j.MaxAttempts:
		o.State = StateFailed
	default:
		o.State = StateRetryable
	}
	return o
}
