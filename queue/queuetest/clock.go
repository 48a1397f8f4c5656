package queuetest

import (
	"sync"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var _ queue.Clock = (*Clock)(nil)

// Clock is a [queue.Clock] that moves only when told to. Pass it as
// queue.Config.Clock to move schedules, leases, backoff delays and
// retention forward without sleeping. It is safe for concurrent use.
//
// The engine's loops still tick in real time; the clock only decides what
// time they believe it is.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads t until it is moved.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// Set moves the clock to t, forward or backward.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
