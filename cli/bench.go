package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kilnhq/kiln/internal/bench"
	"github.com/kilnhq/kiln/internal/metrics"
	"github.com/kilnhq/kiln/internal/monitor"
	"github.com/kilnhq/kiln/internal/tracing"
	"github.com/kilnhq/kiln/queue"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newBenchCmd(g *globals) *cobra.Command {
	var (
		mode     string
		jobs     int
		workers  int
		rate     float64
		duration time.Duration
		asJSON   bool
		tele     bool
		cpuProf  string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the job engine",
		Long: `Benchmark the job engine with its default settings.

  --mode throughput  batch-inserts --jobs noop jobs, then works them with
                     --workers workers; the clock stops when all are completed
                     in the database.
  --mode latency     keeps the workers idle and inserts one job at a time at
                     --rate per second for --duration, measuring from the insert
                     call to the start of the handler.

Without --db the run uses a fresh SQLite file in a temporary directory,
removed afterwards. Against an existing database the jobs go to a queue of
their own (bench_<random>), never touching other jobs; they are pruned with
the other completed jobs. With --json the last line of output is one JSON
object.

--telemetry turns on what serve runs by default, so that its cost is part of
the figures: Prometheus metrics fed by every job event (and scraped every
15s, queue depth included), the runtime monitor, the slow-job log, and
OpenTelemetry tracing of every insert and attempt when
OTEL_EXPORTER_OTLP_ENDPOINT is set. Compare runs with and without it.

--cpuprofile FILE writes a CPU profile of the run (set-up excluded) for
go tool pprof; two profiles, with and without --telemetry, show where the
difference goes (go tool pprof -diff_base off.pprof on.pprof).`,
		Example: `  kiln bench --mode throughput --jobs 50000 --workers 100
  kiln bench --mode latency --rate 200 --duration 10s --json
  kiln bench --telemetry --json
  kiln bench --telemetry --cpuprofile on.pprof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mode != "throughput" && mode != "latency" {
				return usagef("--mode must be throughput or latency, got %q", mode)
			}
			if jobs < 1 || jobs > 10_000_000 {
				return usagef("--jobs must be between 1 and 10000000")
			}
			if workers < 1 || workers > 10000 {
				return usagef("--workers must be between 1 and 10000")
			}
			if rate <= 0 || rate > 100000 {
				return usagef("--rate must be in (0, 100000]")
			}
			if duration <= 0 || duration > 24*time.Hour {
				return usagef("--duration must be positive and at most 24h")
			}
			if mode == "latency" && int(rate*duration.Seconds()) < 1 {
				return usagef("--rate %g for --duration %s inserts no job; raise either", rate, duration)
			}
			var prof *os.File
			if cpuProf != "" {
				f, err := os.Create(cpuProf)
				if err != nil {
					return usagef("--cpuprofile: %v", err)
				}
				defer f.Close()
				prof = f
			}
			url := g.db
			if url == "" {
				dir, err := os.MkdirTemp("", "kiln-bench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				url = filepath.Join(dir, "bench.db")
			}
			if !cmd.Flags().Changed("log-level") && os.Getenv("KILN_LOG_LEVEL") == "" {
				g.logLevel = "warn" // keep the engine's info lines out of the results
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			s, err := openStore(cmd.Context(), url, true, log)
			if err != nil {
				return err
			}
			defer s.Close()
			o := bench.Options{Driver: s.driver, Jobs: jobs, Workers: workers, Rate: rate, Duration: duration, Logger: log, Queue: bench.NewQueueName()}
			telemetryDesc := "off"
			if tele {
				bt, err := startBenchTelemetry(cmd.Context(), s.driver, log)
				if err != nil {
					return err
				}
				defer bt.stop()
				o.Configure = bt.configure
				telemetryDesc = bt.describe()
			}
			if !asJSON {
				if isTerminal(g.stderr) {
					o.Progress = g.stderr // a redrawn bar only where one can be seen
				}
				fmt.Fprintf(g.stdout, "kiln bench: %s on %s, queue %s, telemetry %s\n", mode, s.display, o.Queue, telemetryDesc)
			}
			if prof != nil {
				if err := pprof.StartCPUProfile(prof); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile() // before the file's Close, deferred earlier
			}
			var res any
			if mode == "throughput" {
				r, err := bench.RunThroughput(cmd.Context(), o)
				if err != nil {
					return err
				}
				res = r
				if !asJSON {
					tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintf(tw, "driver\t%s\njobs\t%d\nworkers\t%d\ninsert\t%.0f jobs/s\nwork\t%.0f jobs/s\npeak RSS\t%.1f MB\n",
						r.Driver, r.Jobs, r.Workers, r.InsertJobsPerS, r.WorkJobsPerS, r.PeakRSSMB)
					_ = tw.Flush()
				}
			} else {
				r, err := bench.RunLatency(cmd.Context(), o)
				if err != nil {
					return err
				}
				res = r
				if !asJSON {
					tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintf(tw, "driver\t%s\njobs\t%d\nrate\t%.0f/s\np50\t%.3f ms\np95\t%.3f ms\np99\t%.3f ms\nmax\t%.3f ms\n",
						r.Driver, r.Jobs, r.Rate, r.P50, r.P95, r.P99, r.Max)
					_ = tw.Flush()
				}
			}
			if asJSON {
				b, err := json.Marshal(res)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, string(b))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&mode, "mode", "throughput", "throughput or latency")
	fl.IntVar(&jobs, "jobs", 20000, "throughput: jobs to insert and work")
	fl.IntVar(&workers, "workers", 100, "worker slots")
	fl.Float64Var(&rate, "rate", 200, "latency: inserts per second")
	fl.DurationVar(&duration, "duration", 10*time.Second, "latency: how long to insert")
	fl.BoolVar(&asJSON, "json", false, "print one JSON object as the last line")
	fl.StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of the run to this file")
	fl.BoolVar(&tele, "telemetry", false, "run with metrics, the runtime monitor, the slow-job log and (when OTEL_EXPORTER_OTLP_ENDPOINT is set) tracing, as serve does")
	return cmd
}

// benchTelemetry is serve's observability, run inside kiln bench.
type benchTelemetry struct {
	metrics *metrics.Metrics
	slow    *monitor.SlowLog
	tracing *tracing.Tracing
	log     *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startBenchTelemetry starts the runtime monitor and a 15s metrics scrape
// (as a Prometheus server would) and sets up tracing from the
// environment. Stop it with stop.
func startBenchTelemetry(ctx context.Context, d queue.Driver, log *slog.Logger) (*benchTelemetry, error) {
	tr, err := tracing.Setup(ctx, tracing.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	bt := &benchTelemetry{
		metrics: metrics.New(metrics.Options{Logger: log}),
		slow:    monitor.NewSlowLog(monitor.SlowOptions{RequestThreshold: monitor.Disabled, JobThreshold: time.Minute, Logger: log}),
		tracing: tr,
		log:     log,
	}
	bt.metrics.WatchQueues(driverStats{d})
	ctx, bt.cancel = context.WithCancel(context.Background())
	mon := monitor.New(monitor.Options{SchedLatencyThreshold: 100 * time.Millisecond, Logger: log, OnLag: bt.slow.Lag})
	bt.wg.Go(func() { mon.Run(ctx) })
	bt.wg.Go(func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := bt.metrics.Registry().Gather(); err != nil {
					log.Warn("bench: metrics scrape", "err", err)
				}
			}
		}
	})
	return bt, nil
}

// configure adds the telemetry's hooks to an engine client's config.
func (bt *benchTelemetry) configure(cfg *queue.Config) {
	cfg.Hooks = append(cfg.Hooks, bt.metrics.ObserveJobEvent, bt.slow.Job)
	cfg.InsertHook, cfg.WorkHook = bt.tracing.InsertHook(), bt.tracing.WorkHook()
}

// describe says what is on, for the report's first line.
func (bt *benchTelemetry) describe() string {
	if bt.tracing.InsertHook() != nil {
		return "on (metrics, runtime monitor, slow log, tracing)"
	}
	return "on (metrics, runtime monitor, slow log; tracing off: OTEL_EXPORTER_OTLP_ENDPOINT unset)"
}

func (bt *benchTelemetry) stop() {
	bt.cancel()
	bt.wg.Wait()
	bt.slow.Wait()
	shutdownTracing(bt.tracing, bt.log)
}

// driverStats gives the metrics' queue-depth collector the driver's
// counts, as the engine client would.
type driverStats struct{ d queue.Driver }

func (s driverStats) Queues(ctx context.Context) ([]queue.QueueStats, error) {
	return s.d.QueueStats(ctx, time.Now())
}
