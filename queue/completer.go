package queue

import (
	"context"
	"sync"
	"time"
)

// completer writes attempt outcomes in batches: whatever has accumulated
// while the previous write ran goes in the next one, so a busy client makes
// one write for many jobs and an idle one writes each outcome at once.
type completer struct {
	c      *Client
	in     chan pendingOutcome
	closed chan struct{}
	exited chan struct{}
	once   sync.Once
}

type pendingOutcome struct {
	a     *attempt
	o     Outcome
	ev    EventKind
	evErr error
}

func newCompleter(c *Client) *completer {
	return &completer{
		c:      c,
		in:     make(chan pendingOutcome, c.cfg.CompleteBatch*2),
		closed: make(chan struct{}),
		exited: make(chan struct{}),
	}
}

// add queues an outcome. It blocks only when the buffer is full, which
// pushes back on workers while the database is slow.
func (cp *completer) add(a *attempt, o Outcome, ev EventKind, evErr error) {
	cp.in <- pendingOutcome{a: a, o: o, ev: ev, evErr: evErr}
}

// close writes everything queued and stops the loop.
func (cp *completer) close() {
	cp.once.Do(func() { close(cp.closed) })
	<-cp.exited
}

func (cp *completer) run() {
	defer close(cp.exited)
	batch := make([]pendingOutcome, 0, cp.c.cfg.CompleteBatch)
	for {
		select {
		case p := <-cp.in:
			batch = append(batch[:0], p)
		case <-cp.closed:
			// Drain what is left, then exit.
			for {
				batch = batch[:0]
				cp.drain(&batch)
				if len(batch) == 0 {
					return
				}
				cp.write(batch)
			}
		}
		cp.drain(&batch)
		cp.write(batch)
	}
}

func (cp *completer) drain(batch *[]pendingOutcome) {
	for len(*batch) < cap(*batch) {
		select {
		case p := <-cp.in:
			*batch = append(*batch, p)
		default:
			return
		}
	}
}

// write records a batch, retrying with backoff until it succeeds: an
// outcome is never dropped while the process lives (the job's lease is
// kept alive meanwhile, since it stays in the running set).
func (cp *completer) write(batch []pendingOutcome) {
	c := cp.c
	outcomes := make([]Outcome, len(batch))
	for i, p := range batch {
		outcomes[i] = p.o
	}
	applied, ok := cp.finish(outcomes)
	if !ok {
		c.log.Error("could not record job outcomes before shutdown; their leases will expire and the jobs will run again",
			"jobs", len(batch))
		for _, p := range batch {
			c.untrack(p.o.Lease.ID, p.a)
		}
		return
	}
	cp.cancelRefused(batch, outcomes, applied)
	for i, p := range batch {
		c.untrack(p.o.Lease.ID, p.a)
		if !applied[i] {
			c.log.Warn("job outcome refused: the attempt no longer held its lease",
				"job_id", p.o.Lease.ID, "attempt", p.o.Lease.Attempt, "outcome", p.o.State)
			continue
		}
		if p.o.State == StateRetryable || p.o.State == StateScheduled {
			c.promoter.Wake()
		}
		if c.hooks.empty() {
			continue
		}
		j := snapshot(p.a.job)
		applyOutcome(j, p.o)
		var run time.Duration
		if !p.a.started.IsZero() {
			run = p.o.At.Sub(p.a.started)
		}
		c.hooks.emit(Event{Kind: p.ev, Job: j, Err: p.evErr, RunTime: run, At: p.o.At})
	}
}

// finish calls Driver.Finish until it succeeds. It gives up (ok is false)
// only once the client is shutting down and the database has failed for
// 10s.
func (cp *completer) finish(outcomes []Outcome) (applied []bool, ok bool) {
	c := cp.c
	bo := newBackoff(10*time.Millisecond, 2*time.Second)
	errs := newErrorLog(c.log, "record job outcomes")
	first := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		applied, err := c.driver.Finish(ctx, outcomes)
		cancel()
		if err == nil {
			errs.ok()
			return applied, true
		}
		errs.fail(err)
		if cp.giveUp(first) {
			return nil, false
		}
		time.Sleep(bo.next())
	}
}

// cancelRefused records as cancelled the jobs whose outcome the driver
// refused because their cancellation was requested while the attempt ran
// (another process asked, and this client had not yet noticed). Without
// this, a failure, snooze or hand-back would clear the request and the
// job would run again. It updates batch, outcomes and applied in place.
func (cp *completer) cancelRefused(batch []pendingOutcome, outcomes []Outcome, applied []bool) {
	var idx []int
	var ids []int64
	for i, ok := range applied {
		if !ok && !outcomes[i].State.Final() {
			idx = append(idx, i)
			ids = append(ids, outcomes[i].Lease.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, err := cp.c.driver.CancelRequested(ctx, ids)
	cancel()
	if err != nil {
		// The attempts count as fenced off; the rescuer cancels their
		// jobs once the leases expire.
		cp.c.log.Warn("check cancellation requests of refused outcomes", "jobs", len(ids), "err", err)
		return
	}
	requested := make(map[int64]bool, len(req))
	for _, id := range req {
		requested[id] = true
	}
	var again []int
	var retry []Outcome
	for _, i := range idx {
		if !requested[outcomes[i].Lease.ID] {
			continue // the lease was lost
		}
		o := cancelledOutcome(outcomes[i])
		outcomes[i] = o
		batch[i].o, batch[i].ev, batch[i].evErr = o, EventCancelled, errCancelRequested
		again = append(again, i)
		retry = append(retry, o)
	}
	if len(retry) == 0 {
		return
	}
	ok, done := cp.finish(retry)
	if !done {
		return
	}
	for k, i := range again {
		applied[i] = ok[k]
	}
}

// cancelledOutcome turns an outcome that would have run the job again
// into its cancellation, keeping the attempt's error.
func cancelledOutcome(o Outcome) Outcome {
	ae := AttemptError{Attempt: o.Lease.Attempt, At: o.At, Error: errCancelRequested.Error()}
	if o.Error != nil {
		ae.Error += ": " + o.Error.Error
		ae.Panic, ae.Stack = o.Error.Panic, o.Error.Stack
	}
	return Outcome{Lease: o.Lease, State: StateCancelled, At: o.At, Error: &ae}
}

// applyOutcome updates a snapshot the way Finish updated the row.
func applyOutcome(j *Job, o Outcome) {
	j.State = o.State
	j.LeaseToken = 0
	if o.UndoAttempt {
		j.Attempt--
	}
	if o.State.Final() {
		at := o.At
		j.FinalizedAt = &at
	} else {
		j.RunAt = o.RunAt
	}
	if o.State == StateCompleted {
		j.Result, j.Progress = o.Result, 100
	}
	if o.Error != nil {
		j.Errors = append(j.Errors, *o.Error)
	}
}

// giveUp reports whether a failing write should be abandoned: only once
// the client is shutting down and the database has failed for 10s.
func (cp *completer) giveUp(first time.Time) bool {
	select {
	case <-cp.closed:
		return time.Since(first) > 10*time.Second
	default:
		return false
	}
}
