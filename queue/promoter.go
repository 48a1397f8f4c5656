package queue

import (
	"context"
	"log/slog"
	"time"
)

// promoteBatch caps how many jobs one Promote call makes available.
const promoteBatch = 1000

// promoterDriver is the part of [Driver] the promoter uses.
type promoterDriver interface {
	Promote(ctx context.Context, now time.Time, limit int) (queues []string, err error)
	NextRunAt(ctx context.Context) (t time.Time, ok bool, err error)
}

// promoterConfig is what a promoter needs.
type promoterConfig struct {
	Driver promoterDriver
	Clock  Clock
	Logger *slog.Logger
	// Interval is the longest the promoter waits between two passes
	// (the client's PollInterval); it waits less when the next scheduled
	// job is due sooner.
	Interval time.Duration
	// IsLeader tells whether this client leads; the promoter works only
	// while it does.
	IsLeader func() bool
	// Promoted, if set, is called with every queue a pass made jobs
	// available in, so that the queue's producer claims them at once.
	Promoted func(queue string)
}

// promoter makes scheduled and retryable jobs available once their RunAt
// has passed. While this client leads it promotes everything due, then
// sleeps until the next job is due (at most Interval); Wake makes it look
// at once (a job was scheduled or rescued, leadership was gained).
//
// Every started client runs one. It is stopped after the completer has
// written the last outcomes, before the elector resigns.
type promoter struct {
	startStop
	cfg     promoterConfig
	wakeups wakeChan
}

func newPromoter(cfg promoterConfig) *promoter {
	return &promoter{cfg: cfg, wakeups: newWakeChan()}
}

// Start starts promoting; the first pass is at once.
func (p *promoter) Start(ctx context.Context) { p.start(ctx, p.run) }

// Wake makes the promoter look for due jobs now. It never blocks and may
// be called before Start.
func (p *promoter) Wake() { p.wakeups.wake() }

func (p *promoter) run(ctx context.Context) {
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wakeups:
		case <-wait.C:
		}
		next := p.cfg.Interval
		if p.cfg.IsLeader() {
			if d := p.promoteDue(ctx, p.cfg.Clock.Now()); d < next {
				next = d
			}
		}
		wait.Reset(max(next, time.Millisecond))
	}
}

// promoteDue makes the jobs due at now available, tells Promoted their
// queues and returns how long until the next scheduled job is due (or
// Interval when it cannot tell).
func (p *promoter) promoteDue(ctx context.Context, now time.Time) time.Duration {
	for {
		queues, err := p.cfg.Driver.Promote(ctx, now, promoteBatch)
		if err != nil {
			if ctx.Err() == nil {
				p.cfg.Logger.Warn("promote scheduled jobs", "err", err)
			}
			return p.cfg.Interval
		}
		if p.cfg.Promoted != nil {
			for _, q := range queues {
				p.cfg.Promoted(q)
			}
		}
		if len(queues) == 0 {
			break
		}
		// More may be due than one batch held; loop until none are.
		if ctx.Err() != nil {
			return p.cfg.Interval
		}
		if !p.morePromotable(ctx, now) {
			break
		}
	}
	t, ok, err := p.cfg.Driver.NextRunAt(ctx)
	if err != nil || !ok {
		return p.cfg.Interval
	}
	return t.Sub(p.cfg.Clock.Now())
}

func (p *promoter) morePromotable(ctx context.Context, now time.Time) bool {
	t, ok, err := p.cfg.Driver.NextRunAt(ctx)
	return err == nil && ok && !t.After(now)
}
