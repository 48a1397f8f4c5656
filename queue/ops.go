package queue

import (
	"context"
	"fmt"
	"time"
)

// Insert inserts one job. With a unique key that matches an existing job,
// it returns that job with Duplicate set. Errors wrap [ErrInvalid] or
// [ErrUnknownKind] for rejected input.
func (c *Client) Insert(ctx context.Context, p InsertParams) (InsertResult, error) {
	res, err := c.InsertMany(ctx, []InsertParams{p})
	if err != nil {
		return InsertResult{}, err
	}
	return res[0], nil
}

// InsertMany inserts jobs in one transaction, all or none, and returns a
// result per job in order.
func (c *Client) InsertMany(ctx context.Context, ps []InsertParams) ([]InsertResult, error) {
	return c.insert(ctx, nil, ps)
}

// InsertTx inserts jobs inside the caller's transaction, so that they
// exist if and only if it commits. tx must come from the same database as
// the driver: a *sql.Tx for every driver (and a pgx.Tx for pgdriver).
// Workers in this process learn of the jobs by polling or by the driver's
// change watcher, since the client cannot see the commit.
func (c *Client) InsertTx(ctx context.Context, tx any, ps ...InsertParams) ([]InsertResult, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: InsertTx needs a transaction", ErrInvalid)
	}
	return c.insert(ctx, tx, ps)
}

// ValidateInsert checks p as Insert would, without inserting.
func (c *Client) ValidateInsert(p InsertParams) error {
	_, err := c.row(c.clock.Now(), p)
	return err
}

func (c *Client) row(now time.Time, p InsertParams) (Row, error) {
	kc, known := c.workers.Kind(p.Kind)
	if !known && !c.cfg.AllowUnknownKinds {
		// A malformed name is bad input, not merely unregistered.
		if err := checkKind(p.Kind); err != nil {
			return Row{}, err
		}
		return Row{}, fmt.Errorf("%w %q (registered: %v)", ErrUnknownKind, p.Kind, c.workers.Kinds())
	}
	if known && kc.Unavailable != nil {
		return Row{}, fmt.Errorf("%w: %s: %v", ErrKindUnavailable, p.Kind, kc.Unavailable)
	}
	r, err := p.toRow(now, kc, c.retry)
	if err != nil {
		return Row{}, err
	}
	if known {
		if v, ok := kc.Handler.(ArgsValidator); ok {
			if err := v.ValidateArgs(r.Args); err != nil {
				return Row{}, fmt.Errorf("kind %s: %w", p.Kind, err)
			}
		}
	}
	return r, nil
}

func (c *Client) insert(ctx context.Context, tx any, ps []InsertParams) ([]InsertResult, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	now := c.clock.Now()
	rows := make([]Row, len(ps))
	for i, p := range ps {
		if c.cfg.InsertHook != nil {
			c.cfg.InsertHook(ctx, &p)
		}
		r, err := c.row(now, p)
		if err != nil {
			if len(ps) > 1 {
				return nil, fmt.Errorf("job %d of %d: %w", i+1, len(ps), err)
			}
			return nil, err
		}
		rows[i] = r
	}
	res, err := c.driver.InsertMany(ctx, tx, now, rows)
	if err != nil {
		return nil, fmt.Errorf("insert jobs: %w", err)
	}
	if tx != nil {
		return res, nil
	}
	var woke map[string]bool
	scheduled := false
	for _, r := range res {
		if r.Duplicate {
			continue
		}
		switch r.Job.State {
		case StateAvailable:
			if p, ok := c.producers[r.Job.Queue]; ok && !woke[r.Job.Queue] {
				if woke == nil {
					woke = map[string]bool{}
				}
				woke[r.Job.Queue] = true
				p.wakeUp()
			}
		case StateScheduled:
			scheduled = true
		}
		if !c.hooks.empty() {
			c.hooks.emit(Event{Kind: EventInserted, Job: snapshot(r.Job), At: now})
		}
	}
	if scheduled {
		c.promoter.Wake()
	}
	return res, nil
}

// Get returns the job with the given id.
func (c *Client) Get(ctx context.Context, id int64) (*Job, error) {
	j, err := c.driver.GetJob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get job %d: %w", id, err)
	}
	return j, nil
}

// List returns jobs matching p (at most 1000; default 100).
func (c *Client) List(ctx context.Context, p ListParams) ([]*Job, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	p.Limit = min(p.Limit, 1000)
	for _, s := range p.States {
		if !s.Valid() {
			return nil, fmt.Errorf("%w: unknown state %q", ErrInvalid, s)
		}
	}
	jobs, err := c.driver.ListJobs(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return jobs, nil
}

// Cancel cancels a job. A waiting job is cancelled at once; a running job's
// context is cancelled (at once in this process, within the
// CancelCheckInterval of the process running it) and the job ends
// cancelled unless its handler completes regardless. A finished job is
// returned unchanged.
func (c *Client) Cancel(ctx context.Context, id int64) (*Job, error) {
	now := c.clock.Now()
	j, changed, err := c.driver.CancelJob(ctx, nil, id, now)
	if err != nil {
		return nil, fmt.Errorf("cancel job %d: %w", id, err)
	}
	if j.State == StateRunning {
		c.runMu.Lock()
		a := c.running[id]
		c.runMu.Unlock()
		if a != nil {
			a.cancel(errCancelRequested)
		}
	} else if changed {
		c.hooks.emit(Event{Kind: EventCancelled, Job: j, Err: errCancelRequested, At: now})
	}
	return j, nil
}

// Retry makes a finished or waiting job available now, adding an attempt
// if its attempts are exhausted. A running job yields [ErrWrongState].
func (c *Client) Retry(ctx context.Context, id int64) (*Job, error) {
	j, err := c.driver.RetryJob(ctx, nil, id, c.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("retry job %d: %w", id, err)
	}
	if p, ok := c.producers[j.Queue]; ok {
		p.wakeUp()
	}
	return j, nil
}

// CancelTx is [Client.Cancel] inside the caller's transaction, of the
// kinds [Client.InsertTx] takes: the job is cancelled if and only if tx
// commits. Since the client cannot see the commit, a running job's
// context is cancelled within the CancelCheckInterval of the process
// running it (this one too), and no cancelled event is emitted.
func (c *Client) CancelTx(ctx context.Context, tx any, id int64) (*Job, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: CancelTx needs a transaction", ErrInvalid)
	}
	j, _, err := c.driver.CancelJob(ctx, tx, id, c.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("cancel job %d: %w", id, err)
	}
	return j, nil
}

// RetryTx is [Client.Retry] inside the caller's transaction, of the kinds
// [Client.InsertTx] takes: the job is made available if and only if tx
// commits. Workers learn of it by polling or by the driver's change
// watcher, as of jobs inserted with InsertTx.
func (c *Client) RetryTx(ctx context.Context, tx any, id int64) (*Job, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: RetryTx needs a transaction", ErrInvalid)
	}
	j, err := c.driver.RetryJob(ctx, tx, id, c.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("retry job %d: %w", id, err)
	}
	return j, nil
}

// Delete removes a job that is not running and returns it as it was. A
// running job yields [ErrWrongState]: cancel it first.
func (c *Client) Delete(ctx context.Context, id int64) (*Job, error) {
	j, err := c.driver.DeleteJob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("delete job %d: %w", id, err)
	}
	return j, nil
}

// Pause stops every client from claiming jobs of queue (within their
// PollInterval; at once in this client). Running jobs finish.
func (c *Client) Pause(ctx context.Context, queue string) error {
	return c.setPaused(ctx, queue, true)
}

// Resume lets clients claim jobs of queue again.
func (c *Client) Resume(ctx context.Context, queue string) error {
	return c.setPaused(ctx, queue, false)
}

func (c *Client) setPaused(ctx context.Context, queue string, paused bool) error {
	if !validName(queue, MaxQueueLength) {
		return fmt.Errorf("%w: invalid queue name %q", ErrInvalid, queue)
	}
	if err := c.driver.SetQueuePaused(ctx, queue, paused, c.clock.Now()); err != nil {
		return fmt.Errorf("set queue %s paused=%v: %w", queue, paused, err)
	}
	c.pauseWatcher.Refresh(ctx)
	return nil
}

// Queues returns per-queue statistics.
func (c *Client) Queues(ctx context.Context) ([]QueueStats, error) {
	s, err := c.driver.QueueStats(ctx, c.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	return s, nil
}
