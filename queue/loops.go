package queue

import (
	"log/slog"
	"sync"
	"time"
)

// backoff is the delay schedule of the engine's own loops when the
// database fails: doubling from min to max.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// errorLog logs the first failure of a loop and its recovery, not every
// failure in between, so a database outage does not flood the log.
type errorLog struct {
	log     *slog.Logger
	what    string
	attrs   []any
	mu      sync.Mutex
	failing bool
	count   int
	since   time.Time
}

func newErrorLog(log *slog.Logger, what string, attrs ...any) *errorLog {
	return &errorLog{log: log, what: what, attrs: attrs}
}

func (e *errorLog) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.count++
	if e.failing {
		return
	}
	e.failing, e.since = true, time.Now()
	e.log.Error(e.what+" failed; retrying with backoff", append(e.attrs, "err", err)...)
}

func (e *errorLog) ok() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.failing {
		return
	}
	e.log.Info(e.what+" recovered", append(e.attrs, "failures", e.count, "after", time.Since(e.since).Round(time.Millisecond).String())...)
	e.failing, e.count = false, 0
}

// whileLeader returns fn gated on isLeader: the leader-only components
// (rescuer, pruner) do their work only while this client leads.
func whileLeader(isLeader func() bool, fn func()) func() {
	return func() {
		if isLeader() {
			fn()
		}
	}
}
