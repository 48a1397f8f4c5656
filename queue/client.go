package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"
)

// Clock tells the engine the time. Inject one in tests to move leases,
// schedules and backoff forward without sleeping.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// QueueConfig configures how a client works one queue.
type QueueConfig struct {
	// MaxWorkers is how many jobs of the queue this client runs at once.
	MaxWorkers int
}

// Retention is how long finished jobs are kept before the leader prunes
// them. Zero fields take the defaults; a negative field keeps such jobs
// forever.
type Retention struct {
	Completed time.Duration // default 24h
	Failed    time.Duration // default 7 days
	Cancelled time.Duration // default 7 days
}

// Config configures a [Client]. Only Driver is required; a client without
// Queues only inserts and manages jobs.
type Config struct {
	Driver Driver
	// Workers holds the handlers. Inserting a kind it does not hold is
	// refused with [ErrUnknownKind] unless AllowUnknownKinds is set.
	Workers           *Workers
	AllowUnknownKinds bool
	// Queues are the queues this client works, with their concurrency.
	Queues map[string]QueueConfig
	// ID names this client in leases and leadership; default
	// host-pid-random.
	ID     string
	Logger *slog.Logger
	Clock  Clock
	// Rand returns numbers in [0,1) for backoff jitter; default math/rand.
	Rand func() float64

	// LeaseDuration is how long a claim holds a job without a heartbeat
	// (default 30s). HeartbeatInterval is how often leases are extended
	// (default LeaseDuration/3).
	LeaseDuration     time.Duration
	HeartbeatInterval time.Duration
	// CancelCheckInterval is how often running jobs are checked for
	// cancellation requested by other processes (default 1s).
	CancelCheckInterval time.Duration
	// PollInterval is how often idle producers look for jobs that no
	// notification announced, and how often pause states are refreshed
	// (default 1s).
	PollInterval time.Duration
	// FetchBatch caps how many jobs one claim takes (default 200).
	FetchBatch int
	// FetchCooldown is the longest a producer waits to gather free worker
	// slots into one claim while busy (default 1ms).
	FetchCooldown time.Duration
	// CompleteBatch caps how many outcomes one write records (default 1000).
	CompleteBatch int
	// JobTimeout bounds an attempt whose job and kind set no timeout
	// (default 15m; negative means none).
	JobTimeout time.Duration
	// Retention of finished jobs, PruneInterval how often the leader
	// prunes (default 1m), RescueInterval how often it looks for expired
	// leases (default LeaseDuration/3), LeaderTTL how long leadership lasts
	// without renewal (default 10s: after a leader dies, rescue and
	// promotion resume within about that long).
	Retention      Retention
	PruneInterval  time.Duration
	RescueInterval time.Duration
	LeaderTTL      time.Duration
	// DefaultRetry replaces [DefaultRetryPolicy] for this client's jobs.
	DefaultRetry *RetryPolicy
	// ProgressInterval is the minimum time between stored progress updates
	// of one attempt (default 200ms); updates in between are skipped, and
	// the final value is always kept when the job completes.
	ProgressInterval time.Duration
	// Hooks are called synchronously after every transition; keep them
	// fast.
	Hooks []func(Event)
	// InsertHook, if set, sees every job's parameters before they are
	// validated and stored, with the inserting call's context; it may
	// change them (tracing puts the caller's trace context in Metadata).
	// The caller's InsertParams are not modified.
	InsertHook func(ctx context.Context, p *InsertParams)
	// WorkHook, if set, wraps every attempt of every job: it must call
	// work with the attempt's context, or one derived from it, and return
	// what work returns (tracing starts a span around it).
	WorkHook func(ctx context.Context, job *Job, work func(context.Context) error) error
}

// Client inserts, manages and (with queues configured) works jobs. It is
// safe for concurrent use.
type Client struct {
	cfg     Config
	driver  Driver
	workers *Workers
	clock   Clock
	log     *slog.Logger
	retry   RetryPolicy
	hooks   hooks

	mu        sync.Mutex
	started   bool
	stopped   bool
	stopOnce  sync.Once
	producers map[string]*producer
	services  sync.WaitGroup // the completer, producers and change watcher
	svcCancel context.CancelFunc
	// workCtx is the parent of every handler's context; cancelled at a hard stop.
	workCtx    context.Context
	workCancel context.CancelCauseFunc
	jobs       sync.WaitGroup // running handlers
	runner     *runner        // the goroutines handlers run on

	runMu   sync.Mutex
	running map[int64]*attempt

	completer *completer

	// The background components, built by New and started by Start;
	// stop stops them in the order listed.
	promoter      *promoter
	rescuer       *rescuer
	pruner        *pruner
	heartbeat     *heartbeat
	cancelWatcher *cancelWatcher
	pauseWatcher  *pauseWatcher
	elector       *elector

	stopErr    error
	stopClosed chan struct{}
}

// New validates cfg, applies defaults and returns a client that is not
// yet started.
func New(cfg Config) (*Client, error) {
	if cfg.Driver == nil {
		return nil, errors.New("queue: Config.Driver is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.ID == "" {
		cfg.ID = defaultID()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.LeaseDuration, 30*time.Second)
	def(&cfg.HeartbeatInterval, cfg.LeaseDuration/3)
	def(&cfg.CancelCheckInterval, time.Second)
	def(&cfg.PollInterval, time.Second)
	def(&cfg.FetchCooldown, time.Millisecond)
	def(&cfg.JobTimeout, 15*time.Minute)
	def(&cfg.Retention.Completed, 24*time.Hour)
	def(&cfg.Retention.Failed, 7*24*time.Hour)
	def(&cfg.Retention.Cancelled, 7*24*time.Hour)
	def(&cfg.PruneInterval, time.Minute)
	def(&cfg.RescueInterval, cfg.LeaseDuration/3)
	def(&cfg.LeaderTTL, 10*time.Second)
	def(&cfg.ProgressInterval, 200*time.Millisecond)
	if cfg.FetchBatch <= 0 {
		cfg.FetchBatch = 200
	}
	if cfg.CompleteBatch <= 0 {
		cfg.CompleteBatch = 1000
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"LeaseDuration", cfg.LeaseDuration}, {"HeartbeatInterval", cfg.HeartbeatInterval},
		{"CancelCheckInterval", cfg.CancelCheckInterval}, {"PollInterval", cfg.PollInterval},
		{"FetchCooldown", cfg.FetchCooldown}, {"PruneInterval", cfg.PruneInterval},
		{"RescueInterval", cfg.RescueInterval}, {"LeaderTTL", cfg.LeaderTTL},
	} {
		if d.v <= 0 {
			return nil, fmt.Errorf("queue: Config.%s must be positive, got %s", d.name, d.v)
		}
	}
	if cfg.HeartbeatInterval >= cfg.LeaseDuration {
		return nil, fmt.Errorf("queue: Config.HeartbeatInterval (%s) must be shorter than LeaseDuration (%s)", cfg.HeartbeatInterval, cfg.LeaseDuration)
	}
	retry := DefaultRetryPolicy
	if cfg.DefaultRetry != nil {
		if err := cfg.DefaultRetry.Validate(); err != nil {
			return nil, fmt.Errorf("queue: Config.DefaultRetry: %w", err)
		}
		retry = cfg.DefaultRetry.merge(DefaultRetryPolicy)
	}
	for name, q := range cfg.Queues {
		if !validName(name, MaxQueueLength) {
			return nil, fmt.Errorf("queue: invalid queue name %q", name)
		}
		if q.MaxWorkers <= 0 {
			return nil, fmt.Errorf("queue: queue %q: MaxWorkers must be positive, got %d", name, q.MaxWorkers)
		}
	}
	if len(cfg.Queues) > 0 && cfg.Workers == nil {
		return nil, errors.New("queue: Config.Queues is set but Config.Workers is nil")
	}
	c := &Client{
		cfg: cfg, driver: cfg.Driver, workers: cfg.Workers, clock: cfg.Clock,
		log: cfg.Logger.With("client", cfg.ID), retry: retry,
		producers: map[string]*producer{}, running: map[int64]*attempt{},
		stopClosed: make(chan struct{}),
	}
	// The producers exist from the start, although they only run once the
	// client starts: the promoter, the change watcher and Insert look
	// them up by queue, so the map must never change once other
	// goroutines can read it.
	for name, q := range cfg.Queues {
		c.producers[name] = newProducer(c, name, q.MaxWorkers)
	}
	c.newComponents()
	for _, h := range cfg.Hooks {
		c.hooks.add(h)
	}
	return c, nil
}

// newComponents builds the client's background components. They exist
// from the start, although they only run once the client starts, for the
// same reason as the producers: IsLeader, Insert, Pause and Resume use
// them before Start, or while it runs.
func (c *Client) newComponents() {
	cfg := c.cfg
	c.elector = newElector(electorConfig{
		Driver: c.driver, Clock: c.clock, Logger: c.log,
		Name: leaderName, ID: cfg.ID, TTL: cfg.LeaderTTL,
		Changed: c.leadershipChanged,
	})
	c.promoter = newPromoter(promoterConfig{
		Driver: c.driver, Clock: c.clock, Logger: c.log,
		Interval: cfg.PollInterval, IsLeader: c.elector.IsLeader,
		Promoted: c.wakeProducer,
	})
	c.rescuer = newRescuer(rescuerConfig{
		Driver: c.driver, Clock: c.clock, Logger: c.log,
		Interval: cfg.RescueInterval, IsLeader: c.elector.IsLeader,
		Rescued: c.rescued,
	})
	c.pruner = newPruner(prunerConfig{
		Driver: c.driver, Clock: c.clock, Logger: c.log,
		Interval: cfg.PruneInterval, Retention: cfg.Retention,
		IsLeader: c.elector.IsLeader,
	})
	c.heartbeat = newHeartbeat(heartbeatConfig{
		Driver: c.driver, Clock: c.clock, Logger: c.log,
		Interval: cfg.HeartbeatInterval, LeaseDuration: cfg.LeaseDuration,
		Attempts: c.runningAttempts,
	})
	c.cancelWatcher = newCancelWatcher(cancelWatcherConfig{
		Driver: c.driver, Logger: c.log,
		Interval: cfg.CancelCheckInterval, Attempts: c.runningAttempts,
	})
	c.pauseWatcher = newPauseWatcher(pauseWatcherConfig{
		Driver: c.driver, Logger: c.log,
		Interval: cfg.PollInterval, Resumed: c.wakeProducer,
	})
}

// leadershipChanged starts the leader's maintenance at once when this
// client becomes leader, rather than at each component's next turn.
func (c *Client) leadershipChanged(leading bool) {
	if leading {
		c.promoter.Wake()
		c.rescuer.Wake()
		c.pruner.Wake()
	}
}

// rescued emits the rescuer's events and wakes the producers and the
// promoter, which makes the rescued jobs available.
func (c *Client) rescued(events []Event) {
	for _, e := range events {
		c.hooks.emit(e)
	}
	c.wakeProducers("")
	c.promoter.Wake()
}

func defaultID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "kiln"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ID returns the client's ID.
func (c *Client) ID() string { return c.cfg.ID }

// Driver returns the client's driver.
func (c *Client) Driver() Driver { return c.driver }

// Workers returns the client's handler registry (possibly nil).
func (c *Client) Workers() *Workers { return c.workers }

// IsLeader reports whether this client currently holds leadership.
func (c *Client) IsLeader() bool { return c.elector.IsLeader() }

// Subscribe calls fn synchronously after every transition this client
// makes, until the returned function is called. fn must be fast and must
// not call back into the client.
func (c *Client) Subscribe(fn func(Event)) (unsubscribe func()) { return c.hooks.add(fn) }

// Start checks the database schema and starts taking part in leader
// election, with the leader's maintenance; if the client has queues, it
// starts working them along with the heartbeat and the cancellation and
// pause watchers. It returns an error if the schema is not current. ctx
// bounds start-up only; use [Client.Stop] to stop.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return ErrStopped
	}
	if c.started {
		return errors.New("queue: client already started")
	}
	cur, latest, err := c.driver.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("queue: check schema: %w", err)
	}
	if cur > latest {
		return fmt.Errorf("queue: database schema version %d, this kiln knows %d: %w", cur, latest, ErrSchemaTooNew)
	}
	if cur < latest {
		return fmt.Errorf("queue: database schema version %d is behind %d: run migrations first (kiln migrate)", cur, latest)
	}
	c.started = true
	svcCtx, cancel := context.WithCancel(context.Background())
	c.svcCancel = cancel
	c.workCtx, c.workCancel = context.WithCancelCause(context.Background())
	c.runner = newRunner()
	c.completer = newCompleter(c)
	c.goService(func() { c.completer.run() })
	// The components' loops outlive Start's ctx, like the services'.
	bg := context.Background()
	c.elector.Start(bg)
	c.promoter.Start(bg)
	c.rescuer.Start(bg)
	c.pruner.Start(bg)
	if len(c.cfg.Queues) > 0 {
		// Know the paused queues before any producer claims.
		c.pauseWatcher.Refresh(ctx)
		names := make([]string, 0, len(c.cfg.Queues))
		for name := range c.cfg.Queues {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			p := c.producers[name]
			c.goService(func() { p.run(svcCtx) })
		}
		c.heartbeat.Start(bg)
		c.cancelWatcher.Start(bg)
		c.pauseWatcher.Start(bg)
		if w, ok := c.driver.(Watcher); ok {
			c.goService(func() {
				if err := w.Watch(svcCtx, c.wakeProducers); err != nil && svcCtx.Err() == nil {
					c.log.Warn("change watcher stopped; relying on polling", "err", err)
				}
			})
		}
	}
	c.log.Debug("client started", "queues", len(c.cfg.Queues))
	return nil
}

func (c *Client) goService(fn func()) {
	c.services.Add(1)
	go func() {
		defer c.services.Done()
		fn()
	}()
}

// wakeProducers wakes the producer of queue ("" wakes all).
func (c *Client) wakeProducers(queue string) {
	if queue == "" {
		for _, p := range c.producers {
			p.wakeUp()
		}
		return
	}
	c.wakeProducer(queue)
}

// wakeProducer wakes the producer of queue, if this client works it.
func (c *Client) wakeProducer(queue string) {
	if p, ok := c.producers[queue]; ok {
		p.wakeUp()
	}
}

var errShutdown = errors.New("client shutting down")

// Stop stops claiming jobs and waits for running jobs until ctx is done.
// Jobs still running then have their contexts cancelled and are handed
// back to available at once without using an attempt. Outcomes are
// written before Stop returns. Stop is idempotent; later calls return the
// first call's result.
func (c *Client) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.stopErr = c.stop(ctx)
		close(c.stopClosed)
	})
	<-c.stopClosed
	return c.stopErr
}

func (c *Client) stop(ctx context.Context) error {
	c.mu.Lock()
	c.stopped = true
	started := c.started
	c.mu.Unlock()
	if !started {
		return nil
	}
	// 1. Stop claiming.
	for _, p := range c.producers {
		p.stop()
	}
	// 2. Let running jobs finish until ctx is done.
	done := make(chan struct{})
	go func() {
		c.jobs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		// 3. Cancel the rest and hand their jobs back now.
		c.workCancel(errShutdown)
		c.handBackRunning()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			c.log.Warn("handlers did not return after cancellation; their jobs were handed back")
		}
	}
	c.runner.close()
	// 4. Write every outcome. The heartbeat keeps the leases of the
	// attempts whose outcome waits alive meanwhile.
	c.completer.close()
	// 5. Stop the change watcher, then the components: the leader's
	// maintenance, then those that serve running attempts, which are
	// all done.
	c.svcCancel()
	c.services.Wait()
	c.promoter.Stop()
	c.rescuer.Stop()
	c.pruner.Stop()
	c.heartbeat.Stop()
	c.cancelWatcher.Stop()
	c.pauseWatcher.Stop()
	// 6. Resign leadership last, so that no maintenance of this client
	// overlaps a new leader's.
	c.elector.Stop()
	c.log.Debug("client stopped")
	return nil
}

// handBackRunning queues a hand-back outcome for every attempt still
// running; the handlers' own outcomes, if they come later, are dropped.
func (c *Client) handBackRunning() {
	c.runMu.Lock()
	list := make([]*attempt, 0, len(c.running))
	for _, a := range c.running {
		list = append(list, a)
	}
	c.runMu.Unlock()
	now := c.clock.Now()
	for _, a := range list {
		if !a.finish() {
			continue
		}
		c.completer.add(a, Outcome{
			Lease: a.job.lease(), State: StateAvailable, At: now, RunAt: now, UndoAttempt: true,
		}, EventHandedBack, errShutdown)
		a.release()
	}
}
