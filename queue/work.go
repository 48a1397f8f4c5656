package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// attempt is one running attempt of a job in this client.
type attempt struct {
	c       *Client
	p       *producer
	job     *Job
	ctx     context.Context
	cancel  context.CancelCauseFunc
	started time.Time

	finished atomic.Bool // outcome decided
	released atomic.Bool // worker slot freed

	mu           sync.Mutex
	result       json.RawMessage
	lastProgress time.Time
}

// finish claims the right to decide the attempt's outcome.
func (a *attempt) finish() bool { return a.finished.CompareAndSwap(false, true) }

// release frees the attempt's worker slot once.
func (a *attempt) release() {
	if a.released.CompareAndSwap(false, true) {
		a.p.done()
	}
}

var (
	errCancelRequested = errors.New("job cancelled")
	errLeaseLost       = errors.New("lease lost: the job was rescued or handed back")
	errTimeout         = errors.New("attempt timed out")
)

// timeoutError is the cause of an attempt's timeout: errTimeout and the
// timeout, formatted only when read, so that the attempts which end in
// time (nearly all) do not pay for it.
type timeoutError time.Duration

func (e timeoutError) Error() string {
	return errTimeout.Error() + " after " + time.Duration(e).String()
}
func (timeoutError) Unwrap() error { return errTimeout }

// startJob runs job on a goroutine of the client's runner.
func (c *Client) startJob(p *producer, job *Job) {
	kc, _ := c.workers.Kind(job.Kind)
	timeout := job.Timeout
	if timeout == 0 && kc != nil {
		timeout = kc.Timeout
	}
	if timeout == 0 {
		timeout = c.cfg.JobTimeout
	}
	ctx, cancel := context.WithCancelCause(c.workCtx)
	a := &attempt{c: c, p: p, job: job, ctx: ctx, cancel: cancel, started: c.clock.Now()}
	job.run = a
	c.runMu.Lock()
	c.running[job.ID] = a
	c.runMu.Unlock()
	c.jobs.Add(1)
	c.runner.run(func() { c.runAttempt(a, kc, timeout) })
}

// runAttempt runs an attempt's handler and queues its outcome. What comes
// before and after the handler is in functions of their own, so that the
// frames under the handler stay small and a handler that needs little
// stack seldom has to grow it (see runner).
func (c *Client) runAttempt(a *attempt, kc *KindConfig, timeout time.Duration) {
	defer c.jobs.Done()
	defer a.cancel(nil)
	hctx := a.ctx
	if timeout > 0 {
		var stop context.CancelFunc
		hctx, stop = context.WithTimeoutCause(a.ctx, timeout, timeoutError(timeout))
		defer stop()
	}
	if !c.hooks.empty() {
		c.emitStarted(a)
	}
	err := c.callHandler(hctx, kc, a.job)
	c.endAttempt(a, kc, hctx, err)
}

// emitStarted emits the attempt's started event.
func (c *Client) emitStarted(a *attempt) {
	var wait time.Duration
	if a.job.AttemptedAt != nil {
		wait = a.job.AttemptedAt.Sub(a.job.RunAt)
	}
	c.hooks.emit(Event{Kind: EventStarted, Job: snapshot(a.job), Wait: max(wait, 0), At: a.started})
}

// endAttempt queues the outcome of an attempt whose handler returned err,
// unless the attempt was handed back at shutdown, which voids it.
func (c *Client) endAttempt(a *attempt, kc *KindConfig, hctx context.Context, err error) {
	if !a.finish() {
		return
	}
	o, ev, evErr := c.decide(a, kc, hctx, err)
	c.completer.add(a, o, ev, evErr)
	a.release()
}

// callHandler runs the kind's handler, turning a panic into an error.
func (c *Client) callHandler(ctx context.Context, kc *KindConfig, job *Job) (err error) {
	if kc == nil {
		return fmt.Errorf("no handler for kind %q is registered on client %s", job.Kind, c.cfg.ID)
	}
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: string(debug.Stack())}
		}
	}()
	if c.cfg.WorkHook != nil {
		return c.cfg.WorkHook(ctx, job, func(ctx context.Context) error { return kc.Handler.Work(ctx, job) })
	}
	return kc.Handler.Work(ctx, job)
}

type panicError struct {
	value any
	stack string
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// decide turns a handler's return into the attempt's outcome.
func (c *Client) decide(a *attempt, kc *KindConfig, hctx context.Context, err error) (Outcome, EventKind, error) {
	job := a.job
	now := c.clock.Now()
	o := Outcome{Lease: job.lease(), At: now}
	cause := context.Cause(a.ctx)
	switch {
	case errors.Is(cause, errShutdown):
		o.State, o.RunAt, o.UndoAttempt = StateAvailable, now, true
		return o, EventHandedBack, errShutdown
	case err == nil:
		a.mu.Lock()
		o.Result = a.result
		a.mu.Unlock()
		o.State = StateCompleted
		return o, EventCompleted, nil
	case errors.Is(cause, errCancelRequested):
		o.State = StateCancelled
		if !errors.Is(err, errCancelRequested) {
			err = fmt.Errorf("%w: %v", errCancelRequested, err)
		}
		o.Error = attemptError(job, now, err)
		return o, EventCancelled, errCancelRequested
	}
	if tc := context.Cause(hctx); errors.Is(tc, errTimeout) && hctx.Err() != nil {
		err = fmt.Errorf("%w (handler returned: %v)", tc, err)
	}
	var sn *snoozeError
	var ce *cancelError
	switch {
	case errors.As(err, &sn):
		o.State, o.RunAt, o.UndoAttempt = StateScheduled, now.Add(sn.d), true
		return o, EventSnoozed, nil
	case errors.As(err, &ce):
		o.State = StateCancelled
		o.Error = attemptError(job, now, err)
		return o, EventCancelled, err
	}
	o.Error = attemptError(job, now, err)
	if IsPermanent(err) || job.Attempt >= job.MaxAttempts {
		o.State = StateFailed
		return o, EventFailed, err
	}
	policy := c.retry
	if kc != nil {
		policy = kc.Retry.merge(policy)
	}
	if job.Retry != nil {
		policy = job.Retry.merge(policy)
	}
	delay := policy.Delay(job.Attempt, c.cfg.Rand)
	if d, ok := RetryAfterDelay(err); ok && d > delay {
		delay = d
	}
	o.State, o.RunAt = StateRetryable, now.Add(delay)
	return o, EventRetried, err
}

func attemptError(job *Job, now time.Time, err error) *AttemptError {
	ae := &AttemptError{Attempt: job.Attempt, At: now, Error: err.Error()}
	var pe *panicError
	if errors.As(err, &pe) {
		ae.Panic, ae.Stack = true, pe.stack
	}
	return ae
}

// snapshot copies a job for an event so that later changes do not race.
func snapshot(j *Job) *Job {
	cp := *j
	cp.run = nil
	return &cp
}

func (c *Client) untrack(id int64, a *attempt) {
	c.runMu.Lock()
	if c.running[id] == a {
		delete(c.running, id)
	}
	c.runMu.Unlock()
}

// runningAttempts returns the attempts this client holds, including those
// whose outcome is not yet written (their leases must stay alive).
func (c *Client) runningAttempts() []*attempt {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	out := make([]*attempt, 0, len(c.running))
	for _, a := range c.running {
		out = append(out, a)
	}
	return out
}

// SetProgress records how far the running attempt has got: percent in
// 0..100 and a short message. Updates closer together than the client's
// ProgressInterval are skipped, except 100. It returns [ErrNotRunning] for a
// snapshot job and [ErrLeaseLost] if the attempt no longer holds the job.
func (j *Job) SetProgress(ctx context.Context, percent int, message string) error {
	a := j.run
	if a == nil {
		return ErrNotRunning
	}
	percent = max(0, min(percent, 100))
	if len(message) > 1000 {
		message = message[:1000]
	}
	now := a.c.clock.Now()
	a.mu.Lock()
	if percent < 100 && !a.lastProgress.IsZero() && now.Sub(a.lastProgress) < a.c.cfg.ProgressInterval {
		a.mu.Unlock()
		return nil
	}
	a.lastProgress = now
	a.mu.Unlock()
	if err := a.c.driver.SetProgress(ctx, j.lease(), percent, message); err != nil {
		return fmt.Errorf("job %d: set progress: %w", j.ID, err)
	}
	j.Progress, j.ProgressMessage = percent, message
	return nil
}

// SetResult stores v, encoded as JSON, as the job's result when the
// attempt completes. It returns [ErrNotRunning] for a snapshot job.
func (j *Job) SetResult(v any) error {
	a := j.run
	if a == nil {
		return ErrNotRunning
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("job %d: encode result: %w", j.ID, err)
	}
	a.mu.Lock()
	a.result = b
	a.mu.Unlock()
	return nil
}

// Heartbeat extends the attempt's lease now. The client already does so
// in the background; call it in long work to learn promptly that the lease
// was lost ([ErrLeaseLost]), in which case the handler should stop.
func (j *Job) Heartbeat(ctx context.Context) error {
	a := j.run
	if a == nil {
		return ErrNotRunning
	}
	held, err := a.c.driver.ExtendLeases(ctx, []Lease{j.lease()}, a.c.clock.Now().Add(a.c.cfg.LeaseDuration))
	if err != nil {
		return fmt.Errorf("job %d: heartbeat: %w", j.ID, err)
	}
	if len(held) != 1 || !held[0] {
		a.cancel(errLeaseLost)
		return fmt.Errorf("job %d: %w", j.ID, ErrLeaseLost)
	}
	return nil
}

// Logger returns the client's logger with the job's id, kind, queue and
// attempt attached.
func (j *Job) Logger() *slog.Logger {
	var l *slog.Logger
	if j.run != nil {
		l = j.run.c.log
	} else {
		l = slog.Default()
	}
	return l.With("job_id", j.ID, "kind", j.Kind, "queue", j.Queue, "attempt", j.Attempt)
}
