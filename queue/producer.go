package queue

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// producer claims jobs of one queue for this client, never more than its
// free worker slots, and starts a goroutine per claimed job.
type producer struct {
	c       *Client
	queue   string
	max     int
	running atomic.Int64
	wake    chan struct{} // jobs may be available
	freed   chan struct{} // a worker slot was released
	quit    chan struct{}
	exited  chan struct{}
	once    sync.Once
}

func newProducer(c *Client, queue string, max int) *producer {
	return &producer{
		c: c, queue: queue, max: max,
		wake: make(chan struct{}, 1), freed: make(chan struct{}, 1),
		quit: make(chan struct{}), exited: make(chan struct{}),
	}
}

func (p *producer) wakeUp() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// done releases one worker slot.
func (p *producer) done() {
	p.running.Add(-1)
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// stop ends the claim loop and waits for it to exit.
func (p *producer) stop() {
	p.once.Do(func() { close(p.quit) })
	<-p.exited
}

func newToken() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) &^ (1 << 63))
}

// run is the claim loop. It claims when told jobs may be available (an
// insert notification, a poll tick, or a previous full claim) and slots
// are free. While workers are busy it gathers freed slots for up to
// FetchCooldown so that claims stay batched under load.
func (p *producer) run(ctx context.Context) {
	defer close(p.exited)
	c := p.c
	poll := time.NewTicker(c.cfg.PollInterval)
	defer poll.Stop()
	cooldown := time.NewTimer(time.Hour)
	cooldown.Stop()
	cooling, fired := false, false
	more := true // look once at start
	threshold := max(1, min(p.max, c.cfg.FetchBatch)/4)
	backoff := newBackoff(10*time.Millisecond, 5*time.Second)
	errs := newErrorLog(c.log, "claim jobs", "queue", p.queue)
	for {
		running := int(p.running.Load())
		free := p.max - running
		paused := c.pauseWatcher.Paused(p.queue)
		if more && free > 0 && !paused {
			if free >= threshold || running == 0 || fired {
				fired = false
				if cooling {
					cooldown.Stop()
					cooling = false
				}
				limit := min(free, c.cfg.FetchBatch)
				now := c.clock.Now()
				jobs, err := c.driver.Claim(ctx, ClaimParams{
					Queue: p.queue, Limit: limit, Now: now,
					LeaseUntil: now.Add(c.cfg.LeaseDuration), Token: newToken(), ClientID: c.cfg.ID,
				})
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					errs.fail(err)
					select {
					case <-time.After(backoff.next()):
					case <-p.quit:
						return
					}
					continue
				}
				errs.ok()
				backoff.reset()
				more = len(jobs) == limit
				for _, j := range jobs {
					p.running.Add(1)
					c.startJob(p, j)
				}
				if more && p.max-int(p.running.Load()) >= threshold {
					continue
				}
			} else if !cooling {
				cooling = true
				cooldown.Reset(c.cfg.FetchCooldown)
			}
		}
		select {
		case <-p.quit:
			return
		case <-ctx.Done():
			return
		case <-p.wake:
			more = true
		case <-poll.C:
			more = true
		case <-p.freed:
		case <-cooldown.C:
			cooling, fired = false, true
		}
	}
}
