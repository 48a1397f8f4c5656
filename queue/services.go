package queue

import (
	"context"
	"time"
)

const leaderName = "kiln.queue"

// runLeader takes part in leader election and, while leading, runs the
// maintenance that must happen once per database: promoting due scheduled
// and retryable jobs, rescuing jobs whose lease expired, and pruning
// finished jobs.
func (c *Client) runLeader(ctx context.Context) {
	elect := time.NewTicker(c.cfg.LeaderTTL / 3)
	defer elect.Stop()
	errs := newErrorLog(c.log, "leader election")
	var lastRescue, lastPrune time.Time
	try := func() {
		ok, err := c.driver.TryLead(ctx, leaderName, c.cfg.ID, c.clock.Now(), c.cfg.LeaderTTL)
		if err != nil {
			if ctx.Err() == nil {
				errs.fail(err)
			}
			// Without a renewed lease we can no longer assume we lead.
			if c.isLeader.Load() {
				c.isLeader.Store(false)
				c.log.Warn("leadership lost: cannot reach the database")
			}
			return
		}
		errs.ok()
		if ok != c.isLeader.Load() {
			c.isLeader.Store(ok)
			if ok {
				c.log.Info("became leader")
			} else {
				c.log.Info("no longer leader")
			}
		}
	}
	try()
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-elect.C:
			try()
			continue
		case <-c.promote:
		case <-wait.C:
		}
		next := c.cfg.PollInterval
		if c.isLeader.Load() {
			now := c.clock.Now()
			if d := c.promoteDue(ctx, now); d < next {
				next = d
			}
			if now.Sub(lastRescue) >= c.cfg.RescueInterval || lastRescue.After(now) {
				lastRescue = now
				c.rescue(ctx, now)
			}
			if now.Sub(lastPrune) >= c.cfg.PruneInterval || lastPrune.After(now) {
				lastPrune = now
				c.prune(ctx, now)
			}
		}
		wait.Reset(max(next, time.Millisecond))
	}
}

// promoteDue makes due jobs available, wakes their producers and returns
// how long until the next scheduled job is due (capped by PollInterval).
func (c *Client) promoteDue(ctx context.Context, now time.Time) time.Duration {
	for {
		queues, err := c.driver.Promote(ctx, now, 1000)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("promote scheduled jobs", "err", err)
			}
			return c.cfg.PollInterval
		}
		for _, q := range queues {
			if p, ok := c.producers[q]; ok {
				p.wakeUp()
			}
		}
		if len(queues) == 0 {
			break
		}
		// More may be due than one batch held; loop until none are.
		if ctx.Err() != nil {
			return c.cfg.PollInterval
		}
		if !c.morePromotable(ctx, now) {
			break
		}
	}
	t, ok, err := c.driver.NextRunAt(ctx)
	if err != nil || !ok {
		return c.cfg.PollInterval
	}
	return t.Sub(c.clock.Now())
}

func (c *Client) morePromotable(ctx context.Context, now time.Time) bool {
	t, ok, err := c.driver.NextRunAt(ctx)
	return err == nil && ok && !t.After(now)
}

// rescue returns jobs whose lease expired (their worker died) to
// retryable, or fails them when no attempts are left.
func (c *Client) rescue(ctx context.Context, now time.Time) {
	jobs, err := c.driver.ExpiredLeases(ctx, now, 1000)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("find expired leases", "err", err)
		}
		return
	}
	if len(jobs) == 0 {
		return
	}
	outcomes := make([]Outcome, len(jobs))
	for i, j := range jobs {
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
		outcomes[i] = o
	}
	applied, err := c.driver.Finish(ctx, outcomes)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("rescue jobs", "err", err)
		}
		return
	}
	n := 0
	for i, ok := range applied {
		if !ok {
			continue
		}
		n++
		j := snapshot(jobs[i])
		applyOutcome(j, outcomes[i])
		c.hooks.emit(Event{Kind: EventRescued, Job: j, Err: errLeaseLost, At: now})
	}
	if n > 0 {
		c.log.Warn("rescued jobs whose worker stopped heartbeating", "jobs", n)
		c.notify("")
	}
}

// prune deletes finished jobs past their retention.
func (c *Client) prune(ctx context.Context, now time.Time) {
	cut := func(d time.Duration) time.Time {
		if d < 0 {
			return time.Time{}
		}
		return now.Add(-d)
	}
	p := PruneParams{
		CompletedBefore: cut(c.cfg.Retention.Completed),
		FailedBefore:    cut(c.cfg.Retention.Failed),
		CancelledBefore: cut(c.cfg.Retention.Cancelled),
		Limit:           10000,
	}
	total := 0
	for ctx.Err() == nil {
		n, err := c.driver.Prune(ctx, p)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("prune finished jobs", "err", err)
			}
			break
		}
		total += n
		if n < p.Limit {
			break
		}
	}
	if total > 0 {
		c.log.Info("pruned finished jobs", "jobs", total)
	}
}
