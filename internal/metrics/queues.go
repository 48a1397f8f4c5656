package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnhq/kiln/queue"
)

// queueCollector reports queue depth, asking for it at every scrape.
// Concurrent scrapes share one query, and a scrape waits for it no longer
// than the timeout even if the query ignores its context.
type queueCollector struct {
	src     QueueStatser
	now     func() time.Time
	timeout time.Duration
	log     *slog.Logger

	jobs, oldest, paused, took *prometheus.Desc
	errors                     prometheus.Counter

	mu   sync.Mutex
	call *statsCall // the query in progress, if any
}

// statsCall is one Queues query, shared by the scrapes that arrive while
// it runs.
type statsCall struct {
	ctx   context.Context // bounds the query; its end bounds every wait
	done  chan struct{}   // closed when the fields below are set
	stats []queue.QueueStats
	err   error
	took  time.Duration
}

func newQueueCollector(src QueueStatser, now func() time.Time, timeout time.Duration, log *slog.Logger) *queueCollector {
	name := func(n string) string { return prometheus.BuildFQName(Namespace, "queue", n) }
	return &queueCollector{
		src: src, now: now, timeout: timeout, log: log,
		jobs: prometheus.NewDesc(name("jobs"),
			"Jobs in each queue by state, counted at scrape time.",
			[]string{"queue", "state"}, nil),
		oldest: prometheus.NewDesc(name("oldest_available_age_seconds"),
			"Age of the longest-waiting available job of each queue (now minus its run_at); 0 when none is available.",
			[]string{"queue"}, nil),
		paused: prometheus.NewDesc(name("paused"),
			"1 when the queue is paused, else 0.",
			[]string{"queue"}, nil),
		took: prometheus.NewDesc(name("stats_duration_seconds"),
			"How long the scrape's queue statistics query took.",
			nil, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace,
			Subsystem: "queue",
			Name:      "scrape_errors_total",
			Help:      "Scrapes whose queue statistics query failed or timed out; their queue metrics are missing.",
		}),
	}
}

// Describe sends the descriptors of every metric the collector emits.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.oldest
	ch <- c.paused
	ch <- c.took
	c.errors.Describe(ch)
}

// Collect queries the queues and sends their metrics, or counts an error.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	stats, took, err := c.stats()
	if err != nil {
		c.errors.Inc()
		c.log.Error("metrics: queue statistics failed", "err", err)
		c.errors.Collect(ch)
		return
	}
	c.errors.Collect(ch)
	ch <- prometheus.MustNewConstMetric(c.took, prometheus.GaugeValue, took.Seconds())
	now := c.now()
	for _, q := range stats {
		name := labelValue(q.Name)
		for _, st := range queue.AllStates {
			ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(q.Counts[st]), name, string(st))
		}
		age := 0.0
		if q.OldestAvailable != nil {
			age = max(now.Sub(*q.OldestAvailable).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, name)
		paused := 0.0
		if q.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, paused, name)
	}
}

// stats returns the result of the query in progress, or of a new one,
// waiting at most until that query's deadline.
func (c *queueCollector) stats() ([]queue.QueueStats, time.Duration, error) {
	c.mu.Lock()
	call := c.call
	if call == nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		call = &statsCall{ctx: ctx, done: make(chan struct{})}
		c.call = call
		go c.run(call, cancel)
	}
	c.mu.Unlock()
	select {
	case <-call.done:
	case <-call.ctx.Done():
		select {
		case <-call.done:
		default:
			return nil, 0, fmt.Errorf("queue statistics: no answer within %s: %w", c.timeout, call.ctx.Err())
		}
	}
	if call.err != nil {
		return nil, 0, fmt.Errorf("queue statistics: %w", call.err)
	}
	return call.stats, call.took, nil
}

// run performs call's query and publishes its result. Until it returns,
// new scrapes join call instead of starting another query, so a query
// that hangs is never piled up.
func (c *queueCollector) run(call *statsCall, cancel context.CancelFunc) {
	defer cancel()
	start := time.Now()
	call.stats, call.err = c.src.Queues(call.ctx)
	call.took = time.Since(start)
	c.mu.Lock()
	c.call = nil
	c.mu.Unlock()
	close(call.done)
}
