// Package queuetest is the conformance suite of kiln's job engine drivers.
//
// A driver runs it from one test:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T) queue.Driver {
//			d, err := mydriver.Open(...) // a fresh, empty database
//			return queuetest.Migrated(t, d, err)
//		})
//	}
//
// The suite drives real [queue.Client]s against the driver: every state and
// transition, retries and backoff, cancellation across clients, timeouts,
// priorities, queue concurrency, pause and resume, unique keys, progress and
// results, batch and transactional insert, leases, rescue and fencing,
// leader election, events, graceful shutdown, pruning, the management
// operations, input validation and migrations. It also calls the driver
// directly where the contract of [queue.Driver] is finer than what a client
// exercises.
//
// Time of day (RunAt, lease expiry, backoff, retention) comes from a [Clock]
// the suite moves by hand; the clients' loops run on short real intervals,
// and every wait is a poll bounded by a deadline. Subtests run in parallel,
// each on a driver of its own.
//
// Set KILN_QUEUETEST_LOG=1 to see the clients' logs on standard error.
package queuetest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// Migrated takes d and err as a driver's Open returned them and returns d
// migrated, to be closed when t ends: what a test does with the driver it
// opens. Any error, and a failed close, fails t.
func Migrated[D queue.Driver](t testing.TB, d D, err error) D {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

// DBProvider is implemented by drivers whose jobs live in a database/sql
// database that callers may open transactions on. The suite uses it to
// test [queue.Client.InsertTx]; drivers without it skip that test.
type DBProvider interface {
	DB() *sql.DB
}

// epoch is the time the suite's clocks read when a subtest begins.
var epoch = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// Timing of the clients the suite creates: short real intervals so that the
// loops react quickly, and a lease so long that only the suite's dead
// workers (which claim through the driver with a short lease) ever expire
// when the clock is moved.
const (
	pollInterval        = 20 * time.Millisecond
	heartbeatInterval   = 30 * time.Millisecond
	cancelCheckInterval = 30 * time.Millisecond
	leaseDuration       = time.Hour
	leaderTTL           = 300 * time.Millisecond
	rescueInterval      = 20 * time.Millisecond
	pruneInterval       = 20 * time.Millisecond
	// waitTimeout bounds every wait. Conditions are normally met within
	// milliseconds; the bound is generous for slow, busy machines.
	waitTimeout = 20 * time.Second
)

type test struct {
	name string
	fn   func(h *harness)
}

// Run runs the conformance suite. newDriver must return a fresh, migrated,
// empty driver for each subtest (a new SQLite file, a new PostgreSQL schema)
// and register its own cleanup with t.Cleanup. It is called from parallel
// subtests.
func Run(t *testing.T, newDriver func(t *testing.T) queue.Driver) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"States", stateTests},
		{"Retry", retryTests},
		{"Outcomes", outcomeTests},
		{"Cancel", cancelTests},
		{"Timeout", timeoutTests},
		{"Scheduling", schedulingTests},
		{"Unique", uniqueTests},
		{"Progress", progressTests},
		{"Insert", insertTests},
		{"Lease", leaseTests},
		{"Leader", leaderTests},
		{"Events", eventTests},
		{"Shutdown", shutdownTests},
		{"Prune", pruneTests},
		{"Ops", opsTests},
		{"Schema", schemaTests},
		{"Driver", driverTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					d := newDriver(t)
					if d == nil {
						t.Fatal("newDriver returned nil")
					}
					tc.fn(&harness{T: t, driver: d, clock: NewClock(epoch), ctx: t.Context()})
				})
			}
		})
	}
}

// harness is one subtest's driver, clock and helpers.
type harness struct {
	*testing.T
	driver queue.Driver
	clock  *Clock
	ctx    context.Context
}

// clientOpt adjusts a client's configuration.
type clientOpt func(*queue.Config)

func withHooks(fns ...func(queue.Event)) clientOpt {
	return func(c *queue.Config) { c.Hooks = append(c.Hooks, fns...) }
}

func withDriver(d queue.Driver) clientOpt { return func(c *queue.Config) { c.Driver = d } }

// newClient returns a client, not started, that works queues (name to
// MaxWorkers) with w's handlers. It is stopped when the test ends.
func (h *harness) newClient(w *queue.Workers, queues map[string]int, opts ...clientOpt) *queue.Client {
	h.Helper()
	if w == nil {
		w = queue.NewWorkers()
	}
	cfg := queue.Config{
		Driver:              h.driver,
		Workers:             w,
		Clock:               h.clock,
		PollInterval:        pollInterval,
		FetchCooldown:       time.Millisecond,
		HeartbeatInterval:   heartbeatInterval,
		CancelCheckInterval: cancelCheckInterval,
		LeaseDuration:       leaseDuration,
		LeaderTTL:           leaderTTL,
		RescueInterval:      rescueInterval,
		PruneInterval:       pruneInterval,
	}
	if len(queues) > 0 {
		cfg.Queues = map[string]queue.QueueConfig{}
		for name, n := range queues {
			cfg.Queues[name] = queue.QueueConfig{MaxWorkers: n}
		}
	}
	if os.Getenv("KILN_QUEUETEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).
			With("test", h.Name())
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := queue.New(cfg)
	if err != nil {
		h.Fatalf("queue.New: %v", err)
	}
	h.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			h.Errorf("stop client %s: %v", c.ID(), err)
		}
	})
	return c
}

// startClient returns a started client; see newClient.
func (h *harness) startClient(w *queue.Workers, queues map[string]int, opts ...clientOpt) *queue.Client {
	h.Helper()
	c := h.newClient(w, queues, opts...)
	if err := c.Start(h.ctx); err != nil {
		h.Fatalf("start client: %v", err)
	}
	return c
}

func (h *harness) insert(c *queue.Client, p queue.InsertParams) *queue.Job {
	h.Helper()
	res, err := c.Insert(h.ctx, p)
	if err != nil {
		h.Fatalf("insert %s: %v", p.Kind, err)
	}
	if res.Job == nil || res.Job.ID == 0 {
		h.Fatalf("insert %s returned no job: %+v", p.Kind, res)
	}
	return res.Job
}

func (h *harness) get(c *queue.Client, id int64) *queue.Job {
	h.Helper()
	j, err := c.Get(h.ctx, id)
	if err != nil {
		h.Fatalf("get job %d: %v", id, err)
	}
	return j
}

// waitJob polls job id until cond holds and returns it.
func (h *harness) waitJob(c *queue.Client, id int64, what string, cond func(*queue.Job) bool) *queue.Job {
	h.Helper()
	var last *queue.Job
	var lastErr error
	deadline := time.Now().Add(waitTimeout)
	for {
		j, err := c.Get(h.ctx, id)
		if err == nil && cond(j) {
			return j
		}
		last, lastErr = j, err
		if time.Now().After(deadline) {
			h.Fatalf("job %d: not %s within %s; last read: %s (err %v)", id, what, waitTimeout, describe(last), lastErr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitState waits for job id to reach state.
func (h *harness) waitState(c *queue.Client, id int64, state queue.JobState) *queue.Job {
	h.Helper()
	return h.waitJob(c, id, string(state), func(j *queue.Job) bool { return j.State == state })
}

// waitGone waits until job id no longer exists.
func (h *harness) waitGone(c *queue.Client, id int64) {
	h.Helper()
	eventually(h.T, waitTimeout, func() bool {
		_, err := c.Get(h.ctx, id)
		return isErr(err, queue.ErrNotFound)
	}, "job %d to be deleted", id)
}

// sqlDB returns the driver's database, or skips the test (saying what is
// then not tested) when the driver is no [DBProvider].
func (h *harness) sqlDB(untested string) *sql.DB {
	h.Helper()
	dbp, ok := h.driver.(DBProvider)
	if !ok {
		h.Skipf("driver %s does not expose DB() *sql.DB; %s", h.driver.Name(), untested)
	}
	return dbp.DB()
}

// inTx runs op in a new transaction of db and commits it, or rolls it
// back when commit is false; any error fails the test.
func inTx[T any](h *harness, db *sql.DB, commit bool, op func(tx *sql.Tx) (T, error)) T {
	h.Helper()
	tx, err := db.BeginTx(h.ctx, nil)
	if err != nil {
		h.Fatal(err)
	}
	v, err := op(tx)
	if err != nil {
		_ = tx.Rollback()
		h.Fatal(err)
	}
	if commit {
		err = tx.Commit()
	} else {
		err = tx.Rollback()
	}
	if err != nil {
		h.Fatal(err)
	}
	return v
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv returns the next value of ch, failing the test after waitTimeout.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		panic("unreachable")
	}
}

// describe formats a job for failure messages.
func describe(j *queue.Job) string {
	if j == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{id %d kind %s queue %s state %s attempt %d/%d run_at %s errors %v cancel_requested %v}",
		j.ID, j.Kind, j.Queue, j.State, j.Attempt, j.MaxAttempts, j.RunAt.Format(time.RFC3339Nano), j.Errors, j.CancelRequested)
}

func isErr(err, target error) bool { return errors.Is(err, target) }

// wantErr checks that err wraps target and reads exactly msg: each layer
// adds its context once ("get job 8: job not found").
func wantErr(h *harness, what string, err, target error, msg string) {
	h.Helper()
	if !errors.Is(err, target) || err.Error() != msg {
		h.Errorf("%s: %v, want %q wrapping %v", what, err, msg, target)
	}
}

// jsonEqual reports whether a and b hold the same JSON value; drivers may
// store JSON in a normalised form.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nop(context.Context, *queue.Job) error { return nil }

// noRetry is a policy that fails a job at its first error.
var noRetry = queue.WithRetry(queue.RetryPolicy{MaxAttempts: 1})

// fixed returns a kind option retrying up to attempts times, every d,
// without jitter.
func fixed(attempts int, d time.Duration) queue.KindOption {
	return queue.WithRetry(queue.RetryPolicy{MaxAttempts: attempts, Backoff: queue.BackoffFixed, BaseDelay: d, Jitter: -1})
}

// recorder keeps the events of the clients it is hooked into.
type recorder struct {
	mu     sync.Mutex
	events []queue.Event
}

func (r *recorder) record(e queue.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all(kind queue.EventKind, id int64) []queue.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []queue.Event
	for _, e := range r.events {
		if e.Kind == kind && e.Job != nil && e.Job.ID == id {
			out = append(out, e)
		}
	}
	return out
}

// wait returns the first event of kind about job id, waiting for it.
func (r *recorder) wait(t testing.TB, kind queue.EventKind, id int64) queue.Event {
	t.Helper()
	var out []queue.Event
	eventually(t, waitTimeout, func() bool {
		out = r.all(kind, id)
		return len(out) > 0
	}, "event %s of job %d", kind, id)
	return out[0]
}

// spyDriver wraps a driver to count calls of the methods the suite
// watches, and optionally to make Resign a no-op (a leader that dies).
// It deliberately hides optional interfaces such as queue.Watcher, so a
// client on it learns of other clients' changes only by polling.
type spyDriver struct {
	queue.Driver
	pausedCalls  atomic.Int64
	leadCalls    atomic.Int64
	claimCalls   atomic.Int64
	expiredCalls atomic.Int64
	noResign     bool
	// While blockLead is set, TryLead signals leadBlocked (if not nil) and
	// waits for its context to end, like a call cut short by shutdown.
	blockLead   atomic.Bool
	leadBlocked chan struct{}
}

func (d *spyDriver) ExpiredLeases(ctx context.Context, now time.Time, limit int) ([]*queue.Job, error) {
	defer d.expiredCalls.Add(1)
	return d.Driver.ExpiredLeases(ctx, now, limit)
}

func (d *spyDriver) PausedQueues(ctx context.Context) ([]string, error) {
	defer d.pausedCalls.Add(1)
	return d.Driver.PausedQueues(ctx)
}

func (d *spyDriver) TryLead(ctx context.Context, name, id string, now time.Time, ttl time.Duration) (bool, error) {
	defer d.leadCalls.Add(1)
	if d.blockLead.Load() {
		select {
		case d.leadBlocked <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return false, ctx.Err()
	}
	return d.Driver.TryLead(ctx, name, id, now, ttl)
}

func (d *spyDriver) Claim(ctx context.Context, p queue.ClaimParams) ([]*queue.Job, error) {
	defer d.claimCalls.Add(1)
	return d.Driver.Claim(ctx, p)
}

func (d *spyDriver) Resign(ctx context.Context, name, id string) error {
	if d.noResign {
		return nil
	}
	return d.Driver.Resign(ctx, name, id)
}

// waitCalls waits until counter has grown by n from its value now.
func waitCalls(t testing.TB, counter *atomic.Int64, n int64, what string) {
	t.Helper()
	start := counter.Load()
	eventually(t, waitTimeout, func() bool { return counter.Load() >= start+n }, "%d more %s calls", n, what)
}
