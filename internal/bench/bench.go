// Package bench is kiln's own benchmark of the job engine: how fast jobs
// are inserted and worked (throughput mode) and how soon an idle worker
// starts a newly inserted job (latency mode).
package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/kilnhq/kiln/queue"
)

// Options configure a run. Engine settings not named here keep the
// engine's defaults.
type Options struct {
	Driver   queue.Driver
	Jobs     int           // throughput: jobs to insert and work
	Workers  int           // worker slots of the bench queue
	Rate     float64       // latency: inserts per second
	Duration time.Duration // latency: how long to insert
	// Queue is the queue the run's jobs go to; empty means a new
	// bench_<random> queue (see NewQueueName).
	Queue string
	// Progress receives a progress bar; nil shows none.
	Progress io.Writer
	Logger   *slog.Logger
	// Configure, if set, adjusts every engine client the run creates
	// (kiln bench --telemetry adds metrics and tracing hooks), so that
	// their cost is part of the measurement.
	Configure func(*queue.Config)
}

// newClient creates an engine client with cfg after Configure.
func (o Options) newClient(cfg queue.Config) (*queue.Client, error) {
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	return queue.New(cfg)
}

// Throughput is the result of throughput mode.
type Throughput struct {
	Mode           string  `json:"mode"`
	Driver         string  `json:"driver"`
	Jobs           int     `json:"jobs"`
	Workers        int     `json:"workers"`
	InsertJobsPerS float64 `json:"insert_jobs_per_s"`
	WorkJobsPerS   float64 `json:"work_jobs_per_s"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
}

// Latency is the result of latency mode, in milliseconds from the start of
// the insert call to the start of the handler.
type Latency struct {
	Mode   string  `json:"mode"`
	Driver string  `json:"driver"`
	Jobs   int     `json:"jobs"`
	Rate   float64 `json:"rate"`
	P50    float64 `json:"p50_ms"`
	P95    float64 `json:"p95_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
}

// NewQueueName returns a queue name of its own for a run, so that it never
// touches other jobs in the database.
func NewQueueName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "bench_" + hex.EncodeToString(b[:])
}

func (o *Options) queue() string {
	if o.Queue == "" {
		o.Queue = NewQueueName()
	}
	return o.Queue
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (o *Options) bar(max int, what string) *progressbar.ProgressBar {
	if o.Progress == nil {
		return progressbar.DefaultSilent(int64(max))
	}
	return progressbar.NewOptions(max,
		progressbar.OptionSetWriter(o.Progress),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("jobs"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
	)
}

// RunThroughput batch-inserts o.Jobs noop jobs, then works them with
// o.Workers workers; the work clock stops when all are completed in the
// database.
func RunThroughput(ctx context.Context, o Options) (*Throughput, error) {
	if o.Jobs < 1 || o.Workers < 1 {
		return nil, errors.New("bench: jobs and workers must be at least 1")
	}
	q := o.queue()
	var done atomic.Int64
	finished := make(chan struct{})
	w := queue.NewWorkers()
	w.HandleFunc("noop", func(context.Context, *queue.Job) error { return nil })
	c, err := o.newClient(queue.Config{Driver: o.Driver, Workers: w, Logger: o.logger()})
	if err != nil {
		return nil, err
	}
	// Insert.
	const chunk = 10000
	bar := o.bar(o.Jobs, "insert")
	params := make([]queue.InsertParams, 0, chunk)
	start := time.Now()
	for left := o.Jobs; left > 0; {
		n := min(left, chunk)
		params = params[:0]
		for range n {
			params = append(params, queue.InsertParams{Kind: "noop", Opts: queue.InsertOpts{Queue: q}})
		}
		if _, err := c.InsertMany(ctx, params); err != nil {
			return nil, fmt.Errorf("bench: insert: %w", err)
		}
		left -= n
		_ = bar.Add(n)
	}
	insertDur := time.Since(start)
	_ = bar.Finish()

	// Work.
	wc, err := o.newClient(queue.Config{
		Driver: o.Driver, Workers: w, Logger: o.logger(),
		Queues: map[string]queue.QueueConfig{q: {MaxWorkers: o.Workers}},
		Hooks: []func(queue.Event){func(e queue.Event) {
			if e.Kind == queue.EventCompleted && done.Add(1) == int64(o.Jobs) {
				close(finished)
			}
		}},
	})
	if err != nil {
		return nil, err
	}
	bar = o.bar(o.Jobs, "work")
	start = time.Now()
	if err := wc.Start(ctx); err != nil {
		return nil, err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var workDur time.Duration
wait:
	for {
		select {
		case <-finished:
			workDur = time.Since(start)
			break wait
		case <-tick.C:
			_ = bar.Set64(done.Load())
		case <-ctx.Done():
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = wc.Stop(stopCtx)
			return nil, ctx.Err()
		}
	}
	_ = bar.Finish()
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wc.Stop(stopCtx); err != nil {
		return nil, err
	}
	if err := verifyCompleted(ctx, c, q, o.Jobs); err != nil {
		return nil, err
	}
	return &Throughput{
		Mode: "throughput", Driver: o.Driver.Name(), Jobs: o.Jobs, Workers: o.Workers,
		InsertJobsPerS: round(float64(o.Jobs) / insertDur.Seconds()),
		WorkJobsPerS:   round(float64(o.Jobs) / workDur.Seconds()),
		PeakRSSMB:      round(PeakRSSMB()),
	}, nil
}

// verifyCompleted checks in the database that all n jobs of q completed.
func verifyCompleted(ctx context.Context, c *queue.Client, q string, n int) error {
	stats, err := c.Queues(ctx)
	if err != nil {
		return fmt.Errorf("bench: verify: %w", err)
	}
	for _, s := range stats {
		if s.Name == q {
			if got := s.Counts[queue.StateCompleted]; got != int64(n) {
				return fmt.Errorf("bench: %d of %d jobs completed in the database", got, n)
			}
			return nil
		}
	}
	return fmt.Errorf("bench: queue %s not found in the database", q)
}

// RunLatency keeps o.Workers workers idle and inserts one job at a time at
// o.Rate per second for o.Duration, measuring from the start of each
// insert call to the start of its handler.
func RunLatency(ctx context.Context, o Options) (*Latency, error) {
	if o.Rate <= 0 || o.Rate > 100000 || o.Duration <= 0 || o.Workers < 1 {
		return nil, errors.New("bench: rate must be in (0, 100000], duration positive and workers at least 1")
	}
	total := int(o.Rate * o.Duration.Seconds())
	if total < 1 {
		return nil, fmt.Errorf("bench: %g jobs/s for %s inserts no job; raise the rate or the duration", o.Rate, o.Duration)
	}
	q := o.queue()
	var mu sync.Mutex
	lat := make([]time.Duration, 0, int(o.Rate*o.Duration.Seconds())+1)
	w := queue.NewWorkers()
	w.HandleFunc("noop", func(_ context.Context, j *queue.Job) error {
		now := time.Now()
		var a struct {
			T int64 `json:"t"`
		}
		if err := json.Unmarshal(j.Args, &a); err != nil {
			return queue.Permanent(err)
		}
		mu.Lock()
		lat = append(lat, now.Sub(time.Unix(0, a.T)))
		mu.Unlock()
		return nil
	})
	c, err := o.newClient(queue.Config{
		Driver: o.Driver, Workers: w, Logger: o.logger(),
		Queues: map[string]queue.QueueConfig{q: {MaxWorkers: o.Workers}},
	})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Stop(sctx)
	}()
	bar := o.bar(total, "latency")
	interval := time.Duration(float64(time.Second) / o.Rate)
	start := time.Now()
	inserted := 0
	for inserted < total {
		next := start.Add(time.Duration(inserted) * interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		args := []byte(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`)
		if _, err := c.Insert(ctx, queue.InsertParams{Kind: "noop", Args: args, Opts: queue.InsertOpts{Queue: q}}); err != nil {
			return nil, fmt.Errorf("bench: insert: %w", err)
		}
		inserted++
		_ = bar.Add(1)
	}
	_ = bar.Finish()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n >= total {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench: only %d of %d jobs started within 30s", n, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }
	return &Latency{
		Mode: "latency", Driver: o.Driver.Name(), Jobs: total, Rate: o.Rate,
		P50: ms(Percentile(lat, 0.50)), P95: ms(Percentile(lat, 0.95)),
		P99: ms(Percentile(lat, 0.99)), Max: ms(lat[len(lat)-1]),
	}, nil
}

// Percentile returns the p-quantile (0..1) of sorted by the nearest-rank
// method; zero for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func round(v float64) float64  { return float64(int64(v*10+0.5)) / 10 }
func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// PeakRSSMB returns the process's peak resident set size in MiB (VmHWM on
// Linux; the Go runtime's view of memory obtained from the OS elsewhere).
func PeakRSSMB() float64 {
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
				kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
				if err == nil {
					return kb / 1024
				}
			}
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.Sys) / (1 << 20)
}
