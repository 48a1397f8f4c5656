package queue

import (
	"context"
	"log/slog"
	"time"

	"github.com/kilnhq/kiln/queue/internal/loop"
)

// pruneBatch caps how many jobs one Prune call deletes.
const pruneBatch = 10000

// prunerDriver is the part of [Driver] the pruner uses.
type prunerDriver interface {
	Prune(ctx context.Context, p PruneParams) (int, error)
}

// prunerConfig is what a pruner needs.
type prunerConfig struct {
	Driver prunerDriver
	Clock  Clock
	Logger *slog.Logger
	// Interval is how often the pruner runs (the client's PruneInterval).
	Interval time.Duration
	// Retention says how long finished jobs are kept, per final state;
	// a negative duration keeps them forever. Zero fields are not
	// defaulted here: the client passes its defaulted Retention.
	Retention Retention
	// Batch caps how many jobs one delete removes (default pruneBatch); a
	// pass deletes batch after batch until one comes back short.
	Batch int
	// IsLeader tells whether this client leads; the pruner works only
	// while it does.
	IsLeader func() bool
}

// pruner deletes finished jobs past their retention. While this client
// leads it runs every Interval, and at once on Wake (leadership was
// gained), deleting in batches so that no single write holds the database
// for long.
//
// Every started client runs one. It is stopped after the completer has
// written the last outcomes, before the elector resigns.
type pruner struct {
	startStop
	cfg     prunerConfig
	wakeups wakeChan
}

func newPruner(cfg prunerConfig) *pruner {
	if cfg.Batch <= 0 {
		cfg.Batch = pruneBatch
	}
	return &pruner{cfg: cfg, wakeups: newWakeChan()}
}

// Start starts the pruner; its first pass is after Interval or Wake.
func (p *pruner) Start(ctx context.Context) { p.start(ctx, p.run) }

// Wake makes the pruner run now. It never blocks and may be called before
// Start.
func (p *pruner) Wake() { p.wakeups.wake() }

func (p *pruner) run(ctx context.Context) {
	loop.Every(ctx, p.cfg.Interval, p.wakeups, whileLeader(p.cfg.IsLeader, func() {
		p.prune(ctx, p.cfg.Clock.Now())
	}))
}

// prune deletes the jobs past their retention at now.
func (p *pruner) prune(ctx context.Context, now time.Time) {
	cut := func(d time.Duration) time.Time {
		if d < 0 {
			return time.Time{}
		}
		return now.Add(-d)
	}
	params := PruneParams{
		CompletedBefore: cut(p.cfg.Retention.Completed),
		FailedBefore:    cut(p.cfg.Retention.Failed),
		CancelledBefore: cut(p.cfg.Retention.Cancelled),
		Limit:           p.cfg.Batch,
	}
	total := 0
	for ctx.Err() == nil {
		n, err := p.cfg.Driver.Prune(ctx, params)
		if err != nil {
			if ctx.Err() == nil {
				p.cfg.Logger.Warn("prune finished jobs", "err", err)
			}
			break
		}
		total += n
		if n < params.Limit {
			break
		}
	}
	if total > 0 {
		p.cfg.Logger.Info("pruned finished jobs", "jobs", total)
	}
}
