package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/kilnhq/kiln/internal/admin"
	"github.com/kilnhq/kiln/internal/metrics"
	"github.com/kilnhq/kiln/internal/monitor"
	"github.com/kilnhq/kiln/internal/tracing"
	"github.com/kilnhq/kiln/queue"
)

// telemetryFlags are the observability settings of serve and worker.
type telemetryFlags struct {
	metrics        bool
	monitor        bool
	schedThreshold time.Duration
	slowRequest    time.Duration
	slowJob        time.Duration
	traceDir       string
	adminAddr      string
	adminToken     string
	mutexFraction  int
	blockRate      int
	memoryLimit    string
}

func (t *telemetryFlags) register(cmd *cobra.Command, adminDefault string) {
	fl := cmd.Flags()
	fl.BoolVar(&t.metrics, "metrics", true, "collect Prometheus metrics (GET /metrics on the API with a read token, and on the admin listener)")
	fl.BoolVar(&t.monitor, "runtime-monitor", true, "sample the Go runtime (scheduler latency, heap, GC) and warn on scheduler lag")
	fl.DurationVar(&t.schedThreshold, "sched-latency-threshold", 100*time.Millisecond, "warn when the p99 scheduler latency of a 1s window exceeds this (0: never)")
	fl.DurationVar(&t.slowRequest, "slow-request", time.Second, "log requests slower than this (0: never)")
	fl.DurationVar(&t.slowJob, "slow-job", time.Minute, "log job attempts that run longer than this (0: never)")
	fl.StringVar(&t.traceDir, "trace-dir", "", "keep a flight-recorder trace of the last seconds and save it here on slow events (empty: off)")
	fl.StringVar(&t.adminAddr, "admin-addr", adminDefault, `admin listener for pprof, heap snapshots and metrics ("" or "off": none)`)
	fl.StringVar(&t.adminToken, "admin-token", "", "bearer token the admin listener requires (needed on a non-loopback address)")
	fl.IntVar(&t.mutexFraction, "mutex-fraction", 0, "sample 1 in N mutex contention events for /debug/pprof/mutex (0: off)")
	fl.IntVar(&t.blockRate, "block-rate", 0, "sample one blocking event per N ns blocked for /debug/pprof/block (0: off)")
	fl.StringVar(&t.memoryLimit, "memory-limit", "", "soft memory limit for the Go runtime, like GOMEMLIMIT: 512MiB, 2GiB, or a byte count (empty: GOMEMLIMIT or none)")
}

// check validates the flags without side effects.
func (t *telemetryFlags) check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--sched-latency-threshold", t.schedThreshold}, {"--slow-request", t.slowRequest}, {"--slow-job", t.slowJob}} {
		if d.v < 0 {
			return usagef("%s must not be negative, got %s", d.name, d.v)
		}
	}
	if t.mutexFraction < 0 || t.blockRate < 0 {
		return usagef("--mutex-fraction and --block-rate must not be negative")
	}
	if t.adminAddr == "off" {
		t.adminAddr = ""
	}
	if t.adminAddr != "" {
		if _, err := admin.New(admin.Options{Addr: t.adminAddr, Token: t.adminToken}); err != nil {
			return usagef("--admin-addr: %v", err)
		}
	}
	if _, err := parseBytes(t.memoryLimit); err != nil {
		return usagef("--memory-limit: %v", err)
	}
	if err := tracing.Check(); err != nil {
		return usagef("tracing: %v", err)
	}
	return nil
}

// parseBytes parses a GOMEMLIMIT-style size: a number of bytes with an
// optional B, KiB, MiB, GiB or TiB suffix. Empty is 0 (no limit set).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size like 512MiB, 2GiB or a positive byte count", s)
	}
	return n * mult, nil
}

// disabledIfZero maps a flag's 0 ("never") to the monitor's Disabled.
func disabledIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return monitor.Disabled
	}
	return d
}

// telemetry is the running observability of one process.
type telemetry struct {
	// tracing is disabled (its hooks nil) unless
	// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
	// set.
	tracing  *tracing.Tracing
	log      *slog.Logger
	metrics  *metrics.Metrics // nil when --metrics=false
	monitor  *monitor.Monitor // nil when --runtime-monitor=false
	slow     *monitor.SlowLog // always set
	recorder *monitor.FlightRecorder
	admin    *admin.Server
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

// shutdownTracing flushes the spans tr still holds, waiting at most
// tracingFlushTimeout for an unreachable collector.
func shutdownTracing(tr *tracing.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		log.Warn("tracing: spans not exported at shutdown", "err", err)
	}
}

// tracingFlushTimeout bounds the export of the last spans at exit.
const tracingFlushTimeout = 5 * time.Second

// start sets up telemetry before anything it observes exists: tracing
// as the environment says (see package tracing), metrics (so that the
// features and the engine can register theirs), the slow-event log, the
// runtime monitor and the admin listener, which run until stop. Hand it
// the engine with observe.
func (t *telemetryFlags) start(ctx context.Context, log *slog.Logger) (*telemetry, error) {
	if n, _ := parseBytes(t.memoryLimit); n > 0 {
		debug.SetMemoryLimit(n)
		log.Info("memory limit set", "bytes", n)
	}
	tr, err := tracing.Setup(ctx, tracing.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	tel := &telemetry{tracing: tr, log: log}
	if t.traceDir != "" {
		rec, err := monitor.NewFlightRecorder(monitor.FROptions{Dir: t.traceDir})
		if err != nil {
			tel.stop()
			return nil, fmt.Errorf("--trace-dir: %w", err)
		}
		if err := rec.Start(); err != nil {
			tel.stop()
			return nil, fmt.Errorf("start the flight recorder: %w", err)
		}
		tel.recorder = rec
	}
	tel.slow = monitor.NewSlowLog(monitor.SlowOptions{
		RequestThreshold: disabledIfZero(t.slowRequest),
		JobThreshold:     disabledIfZero(t.slowJob),
		Logger:           log,
		Recorder:         tel.recorder,
	})
	if t.metrics {
		tel.metrics = metrics.New(metrics.Options{Logger: log})
	}
	ctx, cancel := context.WithCancel(context.Background())
	tel.cancel = cancel
	if t.monitor {
		tel.monitor = monitor.New(monitor.Options{
			SchedLatencyThreshold: disabledIfZero(t.schedThreshold),
			Logger:                log,
			OnLag:                 tel.slow.Lag,
		})
		tel.wg.Go(func() { tel.monitor.Run(ctx) })
	}
	if t.adminAddr != "" {
		opts := admin.Options{Addr: t.adminAddr, Token: t.adminToken, Logger: log, MutexFraction: t.mutexFraction, BlockRate: t.blockRate}
		if tel.recorder != nil {
			opts.Recorder = tel.recorder
		}
		if tel.metrics != nil {
			opts.Metrics = tel.metrics.Handler()
		}
		srv, err := admin.New(opts)
		if err == nil {
			err = srv.Listen()
		}
		if err != nil {
			tel.stop()
			return nil, fmt.Errorf("admin listener on %s: %w (set --admin-addr to another address, or off)", t.adminAddr, err)
		}
		tel.admin = srv
		tel.wg.Go(func() {
			if err := srv.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Warn("admin listener stopped", "err", err)
			}
		})
	}
	return tel, nil
}

// engineHooks sets the engine's insert and work hooks (tracing's) in
// cfg, before the client is made from it.
func (tel *telemetry) engineHooks(cfg *queue.Config) {
	cfg.InsertHook, cfg.WorkHook = tel.tracing.InsertHook(), tel.tracing.WorkHook()
}

// observe has telemetry watch engine client c: its job events feed the
// slow-job log and the job metrics, and queue depth is read from it at
// every scrape. Call it before c.Start.
func (tel *telemetry) observe(c *queue.Client) {
	c.Subscribe(tel.slow.Job)
	if tel.metrics != nil {
		c.Subscribe(tel.metrics.ObserveJobEvent)
		tel.metrics.WatchQueues(c)
	}
}

// registerer is where features register metrics of their own: the
// metrics' registry, or nil when --metrics=false.
func (tel *telemetry) registerer() prometheus.Registerer {
	if tel.metrics == nil {
		return nil
	}
	return tel.metrics.Registry()
}

// httpMiddleware is the request middleware of the API: tracing's when
// it is on, else none.
func (tel *telemetry) httpMiddleware() []func(http.Handler) http.Handler {
	if mw := tel.tracing.Middleware(); mw != nil {
		return []func(http.Handler) http.Handler{mw}
	}
	return nil
}

// stop ends the monitor and the admin listener, flushes the flight
// recorder's pending saves and exports the spans tracing still holds.
// Call it after the engine has stopped, so that the last jobs' spans go
// out too.
func (tel *telemetry) stop() {
	defer shutdownTracing(tel.tracing, tel.log)
	if tel.cancel != nil {
		tel.cancel()
	}
	tel.wg.Wait()
	if tel.slow != nil {
		tel.slow.Wait()
	}
	if tel.recorder != nil {
		tel.recorder.Stop()
	}
}
