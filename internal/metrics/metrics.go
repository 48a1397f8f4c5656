// Package metrics exposes kiln's Prometheus metrics: HTTP requests, job
// transitions and timings, queue depth computed at scrape time, the Go
// runtime, the process and the build.
//
// Every metric lives in a registry of its own (never the global one), so
// that several instances, as in tests, do not collide. The hot paths
// ([Metrics.RequestDone] and [Metrics.ObserveJobEvent]) look their series
// up in a copy-on-write map and neither lock nor allocate once a label
// set has been seen.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kilnhq/kiln/queue"
)

// Namespace prefixes every kiln metric.
const Namespace = "kiln"

// DefaultScrapeTimeout bounds the queue statistics query of one scrape
// when [Options.ScrapeTimeout] is zero.
const DefaultScrapeTimeout = 5 * time.Second

// maxScrapesInFlight caps concurrent scrapes of [Metrics.Handler]; more
// are answered 503 at once.
const maxScrapesInFlight = 4

// QueueStatser reports per-queue job counts; *queue.Client satisfies it.
type QueueStatser interface {
	Queues(ctx context.Context) ([]queue.QueueStats, error)
}

var _ QueueStatser = (*queue.Client)(nil)

// Options configures [New]. Every field is optional.
type Options struct {
	// Version is the version reported by kiln_build_info; empty means
	// the main module's version from the build, else "unknown".
	Version string
	// Now is the clock used for the age of the oldest available job;
	// nil means time.Now.
	Now func() time.Time
	// ScrapeTimeout bounds the queue statistics query of one scrape
	// (see [Metrics.WatchQueues]); zero means [DefaultScrapeTimeout].
	ScrapeTimeout time.Duration
	// Logger receives failures of scrapes; nil means slog.Default().
	Logger *slog.Logger
}

// Metrics holds kiln's metrics and their registry. Its methods are safe
// for concurrent use.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	inFlight atomic.Int64
	requests *prometheus.HistogramVec
	reqCache cache[requestKey, prometheus.Observer]

	jobs     *prometheus.CounterVec
	jobRun   *prometheus.HistogramVec
	jobWait  *prometheus.HistogramVec
	jobCache cache[jobKey, *jobSeries]

	opts Options
}

// New returns metrics registered in a new registry, with the Go runtime
// (including scheduler latencies and GC pauses), process and build
// collectors. Queue depth is added by [Metrics.WatchQueues], once the
// engine exists: metrics are made before the features and the engine, so
// that those can register metrics of their own.
func New(opts Options) *Metrics {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = DefaultScrapeTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Metrics{reg: prometheus.NewRegistry(), opts: opts}
	m.initHTTP()
	m.initJobs()

	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace,
			Subsystem: "http",
			Name:      "requests_in_flight",
			Help:      "HTTP API requests being served.",
		}, func() float64 { return float64(m.inFlight.Load()) }),
		m.requests, m.jobs, m.jobRun, m.jobWait,
		buildInfo(opts.Version),
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.MetricsGC,
			collectors.MetricsScheduler,
		)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            errorLog{opts.Logger},
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg,
		MaxRequestsInFlight: maxScrapesInFlight,
		// Longer than the queue query's own bound, so that a slow
		// database yields metrics with an error count, not a 503.
		Timeout:           opts.ScrapeTimeout + 5*time.Second,
		EnableOpenMetrics: true,
	})
	m.handler = promhttp.InstrumentMetricHandler(m.reg, h)
	return m
}

// WatchQueues adds queue depth, asked of q at every scrape. Call it once.
func (m *Metrics) WatchQueues(q QueueStatser) {
	m.reg.MustRegister(newQueueCollector(q, m.opts.Now, m.opts.ScrapeTimeout, m.opts.Logger))
}

// Handler serves the registry in the Prometheus text format, or in
// OpenMetrics when the scraper asks for it (Accept:
// application/openmetrics-text). It answers 503 beyond a few concurrent
// scrapes.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Registry returns the registry holding every kiln metric, for
// registering more collectors or gathering in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// buildInfo returns the kiln_build_info gauge, always 1, whose labels
// name the version, the Go version and the VCS revision of the binary.
func buildInfo(version string) prometheus.Collector {
	goVersion, revision := runtime.Version(), "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" && bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "unknown"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "Always 1; its labels name the kiln version, the Go version and the VCS revision it was built from.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion, "revision": revision},
	})
	g.Set(1)
	return g
}

// errorLog writes promhttp's errors to a slog.Logger.
type errorLog struct{ log *slog.Logger }

// Println logs v as one error line.
func (l errorLog) Println(v ...any) {
	l.log.Error("metrics: serving a scrape failed", "err", fmt.Sprint(v...))
}
