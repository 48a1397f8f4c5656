package queue

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// leaderName names the leadership the clients of one database compete
// for.
const leaderName = "kiln.queue"

// electorDriver is the part of [Driver] the leader elector uses.
type electorDriver interface {
	TryLead(ctx context.Context, name, id string, now time.Time, ttl time.Duration) (bool, error)
	Resign(ctx context.Context, name, id string) error
}

// electorConfig is what a leader elector needs.
type electorConfig struct {
	Driver electorDriver
	Clock  Clock
	Logger *slog.Logger
	// Name is the leadership competed for; ID names this client in it.
	Name, ID string
	// TTL is how long leadership lasts without renewal. The elector tries
	// to take or renew it every TTL/3.
	TTL time.Duration
	// Changed, if set, is called from the elector's goroutine whenever
	// IsLeader changes, after it has changed.
	Changed func(leading bool)
}

// elector takes part in the election of the one client per database that
// promotes scheduled jobs, rescues expired leases and prunes finished
// jobs: from Start it tries to take or renew leadership at once and then
// every TTL/3, and tells Changed when it gains or loses it. Leadership is
// lost when a renewal is refused or fails.
//
// Every started client runs one. It is stopped last, after every other
// component, because Stop resigns: IsLeader turns false, then the
// leadership row is deleted if this client holds it, so that another
// client takes over at once rather than when the lease expires.
type elector struct {
	startStop
	cfg    electorConfig
	leader atomic.Bool
}

func newElector(cfg electorConfig) *elector {
	return &elector{cfg: cfg}
}

// IsLeader reports whether the elector's last attempt won leadership.
func (e *elector) IsLeader() bool { return e.leader.Load() }

// Start starts electing.
func (e *elector) Start(ctx context.Context) { e.start(ctx, e.run) }

func (e *elector) run(ctx context.Context) {
	defer e.resign()
	t := time.NewTicker(e.cfg.TTL / 3)
	defer t.Stop()
	errs := newErrorLog(e.cfg.Logger, "leader election")
	for {
		e.try(ctx, errs)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// try takes or renews leadership once.
func (e *elector) try(ctx context.Context, errs *errorLog) {
	ok, err := e.cfg.Driver.TryLead(ctx, e.cfg.Name, e.cfg.ID, e.cfg.Clock.Now(), e.cfg.TTL)
	if err != nil {
		if ctx.Err() == nil {
			errs.fail(err)
		}
		// Without a renewed lease we can no longer assume we lead.
		if e.leader.Load() {
			e.set(false)
			e.cfg.Logger.Warn("leadership lost: cannot reach the database")
		}
		return
	}
	errs.ok()
	if ok != e.leader.Load() {
		e.set(ok)
		if ok {
			e.cfg.Logger.Info("became leader")
		} else {
			e.cfg.Logger.Info("no longer leader")
		}
	}
}

func (e *elector) set(leading bool) {
	e.leader.Store(leading)
	if e.cfg.Changed != nil {
		e.cfg.Changed(leading)
	}
}

// resign gives up leadership as the loop ends. It resigns whatever the
// loop last believed: a renewal cut short by the shutdown reads as lost
// leadership although the lease may still be ours, and other clients
// would wait for it to expire. Resign only deletes a lease this client
// holds. IsLeader turns false first, so that two clients never report
// leading at once.
func (e *elector) resign() {
	if e.leader.Load() {
		e.set(false)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.cfg.Driver.Resign(ctx, e.cfg.Name, e.cfg.ID); err != nil {
		e.cfg.Logger.Warn("resign leadership", "err", err)
	}
}
