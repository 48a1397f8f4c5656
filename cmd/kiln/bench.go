package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kilnhq/kiln/internal/bench"
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
object.`,
		Example: `  kiln bench --mode throughput --jobs 50000 --workers 100
  kiln bench --mode latency --rate 200 --duration 10s --json`,
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
			if !asJSON {
				if isTerminal(g.stderr) {
					o.Progress = g.stderr // a redrawn bar only where one can be seen
				}
				fmt.Fprintf(g.stdout, "kiln bench: %s on %s, queue %s\n", mode, s.display, o.Queue)
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
	return cmd
}
