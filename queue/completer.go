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
	bo := newBackoff(10*time.Millisecond, 2*time.Second)
	errs := newErrorLog(c.log, "record job outcomes")
	var applied []bool
	first := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var err error
		applied, err = c.driver.Finish(ctx, outcomes)
		cancel()
		if err == nil {
			errs.ok()
			break
		}
		errs.fail(err)
		if cp.giveUp(first) {
			c.log.Error("could not record job outcomes before shutdown; their leases will expire and the jobs will run again",
				"jobs", len(batch), "err", err)
			for _, p := range batch {
				c.untrack(p.o.Lease.ID, p.a)
			}
			return
		}
		time.Sleep(bo.next())
	}
	for i, p := range batch {
		c.untrack(p.o.Lease.ID, p.a)
		if !applied[i] {
			c.log.Warn("job outcome refused: the attempt no longer held its lease",
				"job_id", p.o.Lease.ID, "attempt", p.o.Lease.Attempt, "outcome", p.o.State)
			continue
		}
		if p.o.State == StateRetryable || p.o.State == StateScheduled {
			c.poke()
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
