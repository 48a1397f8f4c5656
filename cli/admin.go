package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnhq/kiln/internal/app"
	"github.com/kilnhq/kiln/queue"
)

func newMigrateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply database migrations",
		Long: `Apply the migrations this kiln knows to the database. serve and worker do
this on start; run it alone to migrate before a rolling deploy. A database
migrated by a newer kiln is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := openRaw(ctx, g.resolveDB(), nil)
			if err != nil {
				return err
			}
			defer s.Close()
			before, latest, err := s.driver.SchemaVersion(ctx)
			if err != nil {
				return fmt.Errorf("read schema version of %s: %w", s.display, err)
			}
			if err := s.prepare(ctx, true); err != nil {
				return err
			}
			if before == latest {
				fmt.Fprintf(g.stdout, "%s is up to date (schema version %d)\n", s.display, latest)
			} else {
				fmt.Fprintf(g.stdout, "%s migrated from schema version %d to %d\n", s.display, before, latest)
			}
			return nil
		},
	}
}

// withClient opens the database (migrating it) and runs fn with an
// insert-only client that knows the built-in kinds. With mustExist, a
// missing embedded database is an error rather than a new empty one (see
// withStore).
func withClient(ctx context.Context, g *globals, mustExist bool, fn func(*queue.Client) error) error {
	return withStore(ctx, g, mustExist, nil, func(s *store, _ *slog.Logger) error {
		w, err := g.workers(app.NewBase(s.app, nil, nil, nil))
		if err != nil {
			return err
		}
		c, err := queue.New(queue.Config{Driver: s.driver, Workers: w})
		if err != nil {
			return err
		}
		return fn(c)
	})
}

func newEnqueueCmd(g *globals) *cobra.Command {
	var (
		q           string
		priority    int
		runIn       time.Duration
		maxAttempts int
		uniqueKey   string
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "enqueue KIND [JSON-ARGS]",
		Short: "Insert a job",
		Example: `  kiln enqueue sleep '{"ms":500}'
  kiln enqueue fail '{"times":2}' --max-attempts 5
  kiln enqueue noop --run-in 1m --unique-key nightly`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var raw json.RawMessage
			if len(args) == 2 {
				raw = json.RawMessage(args[1])
				if !json.Valid(raw) {
					return usagef("arguments for %s are not valid JSON: %s", args[0], args[1])
				}
			}
			if runIn < 0 {
				return usagef("--run-in must not be negative")
			}
			if maxAttempts < 0 {
				return usagef("--max-attempts must be at least 1")
			}
			p := queue.InsertParams{Kind: args[0], Args: raw, Opts: queue.InsertOpts{
				Queue: q, Priority: priority, RunIn: runIn, UniqueKey: uniqueKey,
			}}
			if maxAttempts > 0 {
				p.Opts.Retry = &queue.RetryPolicy{MaxAttempts: maxAttempts}
			}
			return withClient(cmd.Context(), g, false, func(c *queue.Client) error {
				res, err := c.Insert(cmd.Context(), p)
				if err != nil {
					return asUsage(err)
				}
				if asJSON {
					return writeJSON(g.stdout, res.Job)
				}
				verb := "enqueued"
				if res.Duplicate {
					verb = "already enqueued (unique key)"
				}
				fmt.Fprintf(g.stdout, "%s job %d (%s, queue %s, %s)\n", verb, res.Job.ID, res.Job.Kind, res.Job.Queue, res.Job.State)
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&q, "queue", "", "queue (default: the kind's, else default)")
	fl.IntVar(&priority, "priority", 0, "priority, -1000..1000; higher runs first")
	fl.DurationVar(&runIn, "run-in", 0, "delay before the job becomes available, e.g. 30s or 5m")
	fl.IntVar(&maxAttempts, "max-attempts", 0, "total attempts allowed (default: the kind's)")
	fl.StringVar(&uniqueKey, "unique-key", "", "return the existing job with this key instead of inserting a duplicate")
	fl.BoolVar(&asJSON, "json", false, "print the job as JSON")
	return cmd
}

// asUsage marks rejected input as a usage error (exit 2).
func asUsage(err error) error {
	if errors.Is(err, queue.ErrInvalid) || errors.Is(err, queue.ErrUnknownKind) {
		return usageError{err}
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("job id must be a positive integer, got %q", s)
	}
	return id, nil
}

func newJobsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Short: "List, show, retry and cancel jobs"}
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")

	var states, kinds, queues []string
	var limit int
	var after int64
	list := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := queue.ListParams{Kinds: kinds, Queues: queues, Limit: limit, AfterID: after, Desc: true}
			for _, s := range states {
				st, err := queue.ParseState(s)
				if err != nil {
					return usagef("--state: %v", err)
				}
				p.States = append(p.States, st)
			}
			if limit < 1 || limit > 1000 {
				return usagef("--limit must be between 1 and 1000")
			}
			return withClient(cmd.Context(), g, true, func(c *queue.Client) error {
				jobs, err := c.List(cmd.Context(), p)
				if err != nil {
					return err
				}
				if asJSON {
					if jobs == nil {
						jobs = []*queue.Job{}
					}
					return writeJSON(g.stdout, jobs)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tKIND\tQUEUE\tSTATE\tATTEMPT\tRUN AT\tLAST ERROR")
				for _, j := range jobs {
					last := ""
					if n := len(j.Errors); n > 0 {
						last = truncate(j.Errors[n-1].Error, 60)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", j.ID, j.Kind, j.Queue, j.State, j.Attempt, j.MaxAttempts, j.RunAt.Local().Format(time.DateTime), last)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if len(jobs) == limit {
					fmt.Fprintf(g.stderr, "more: kiln jobs list --after %d\n", jobs[len(jobs)-1].ID)
				}
				return nil
			})
		},
	}
	list.Flags().StringSliceVar(&states, "state", nil, "only these states (repeat or comma-separate)")
	list.Flags().StringSliceVar(&kinds, "kind", nil, "only these kinds")
	list.Flags().StringSliceVar(&queues, "queue", nil, "only these queues")
	list.Flags().IntVar(&limit, "limit", 50, "at most this many jobs (1-1000)")
	list.Flags().Int64Var(&after, "after", 0, "list jobs older than this id (the cursor printed by the previous page)")

	one := func(use, short string, op func(context.Context, *queue.Client, int64) (*queue.Job, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, err := parseID(args[0])
				if err != nil {
					return err
				}
				return withClient(cmd.Context(), g, true, func(c *queue.Client) error {
					j, err := op(cmd.Context(), c, id)
					if errors.Is(err, queue.ErrNotFound) {
						return fmt.Errorf("job %d not found", id)
					}
					if err != nil {
						return err
					}
					if asJSON {
						return writeJSON(g.stdout, j)
					}
					printJob(g.stdout, j)
					return nil
				})
			},
		}
	}
	cmd.AddCommand(list,
		one("show", "Show one job", func(ctx context.Context, c *queue.Client, id int64) (*queue.Job, error) { return c.Get(ctx, id) }),
		one("retry", "Make a finished job available again", func(ctx context.Context, c *queue.Client, id int64) (*queue.Job, error) { return c.Retry(ctx, id) }),
		one("cancel", "Cancel a job (a running job's handler is told to stop)", func(ctx context.Context, c *queue.Client, id int64) (*queue.Job, error) {
			return c.Cancel(ctx, id)
		}),
	)
	return cmd
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func printJob(w io.Writer, j *queue.Job) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("id", j.ID)
	row("kind", j.Kind)
	row("queue", j.Queue)
	row("state", j.State)
	if j.CancelRequested {
		row("cancel", "requested")
	}
	row("attempt", fmt.Sprintf("%d of %d", j.Attempt, j.MaxAttempts))
	row("priority", j.Priority)
	row("args", string(j.Args))
	row("created", j.CreatedAt.Local().Format(time.RFC3339))
	row("run at", j.RunAt.Local().Format(time.RFC3339))
	if j.AttemptedAt != nil {
		row("attempted", j.AttemptedAt.Local().Format(time.RFC3339)+" by "+j.AttemptedBy)
	}
	if j.FinalizedAt != nil {
		row("finalized", j.FinalizedAt.Local().Format(time.RFC3339))
	}
	if j.Progress > 0 || j.ProgressMessage != "" {
		row("progress", fmt.Sprintf("%d%% %s", j.Progress, j.ProgressMessage))
	}
	if len(j.Result) > 0 {
		row("result", string(j.Result))
	}
	if j.UniqueKey != "" {
		row("unique key", j.UniqueKey)
	}
	for _, e := range j.Errors {
		row(fmt.Sprintf("error (attempt %d)", e.Attempt), e.At.Local().Format(time.RFC3339)+" "+truncate(e.Error, 200))
	}
	_ = tw.Flush()
}
