// Command river-bench runs kiln's two bench modes against River
// (github.com/riverqueue/river) through its public API, on PostgreSQL with
// the pgx v5 driver or on a temporary SQLite file with the riversqlite
// driver.
//
// On PostgreSQL each run creates a schema of its own (river_bench_<random>),
// points the pool's search_path at it, runs River's migrations there and
// drops the schema afterwards.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/mattn/go-sqlite3" // registers "sqlite3" (cgo)
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // registers "sqlite" (pure Go)

	"github.com/kilnhq/kiln/bench/compare/internal/harness"
)

type options struct {
	harness.Flags
	driver        string
	databaseURL   string
	sqliteLib     string
	insert        string
	tuned         bool
	fetchCooldown time.Duration
	fetchPoll     time.Duration
	poolMaxConns  int
	logLevel      string
}

// noopArgs is the job's args; T carries the insert start time in latency mode.
type noopArgs struct {
	T int64 `json:"t"`
}

func (noopArgs) Kind() string { return "noop" }

func main() {
	var o options
	fs := flag.NewFlagSet("river-bench", flag.ExitOnError)
	o.Register(fs)
	fs.StringVar(&o.driver, "driver", "pgx", "pgx (PostgreSQL, riverpgxv5) or sqlite (riversqlite on a temporary file)")
	fs.StringVar(&o.databaseURL, "database-url", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL for --driver pgx")
	fs.StringVar(&o.sqliteLib, "sqlite-lib", "mattn", "SQLite library for --driver sqlite: mattn (cgo, as kiln's default build) or modernc (pure Go)")
	fs.StringVar(&o.insert, "insert", "fast", "throughput insert call: fast (InsertManyFast; COPY FROM on PostgreSQL) or many (InsertMany)")
	fs.BoolVar(&o.tuned, "tuned", false, "shorthand for --fetch-cooldown 1ms --fetch-poll-interval 10ms")
	fs.DurationVar(&o.fetchCooldown, "fetch-cooldown", 0, "River Config.FetchCooldown (0 = River's default, 100ms)")
	fs.DurationVar(&o.fetchPoll, "fetch-poll-interval", 0, "River Config.FetchPollInterval (0 = River's default, 1s)")
	fs.IntVar(&o.poolMaxConns, "pool-max-conns", 0, "pgxpool MaxConns (0 = pgx's default, max(4, CPUs))")
	fs.StringVar(&o.logLevel, "log-level", "warn", "River's log level on stderr: debug, info, warn or error")
	_ = fs.Parse(os.Args[1:])
	if err := o.Validate(); err != nil {
		harness.Fatal(err)
	}
	if o.tuned {
		if o.fetchCooldown == 0 {
			o.fetchCooldown = time.Millisecond
		}
		if o.fetchPoll == 0 {
			o.fetchPoll = 10 * time.Millisecond
		}
	}
	if o.insert != "fast" && o.insert != "many" {
		harness.Fatal(fmt.Errorf("--insert must be fast or many, got %q", o.insert))
	}
	ctx := context.Background()
	var res any
	var err error
	switch o.driver {
	case "pgx":
		res, err = runPgx(ctx, o)
	case "sqlite":
		res, err = runSQLite(ctx, o)
	default:
		err = fmt.Errorf("--driver must be pgx or sqlite, got %q", o.driver)
	}
	if err != nil {
		harness.Fatal(err)
	}
	if err := harness.Print(res, o.JSON); err != nil {
		harness.Fatal(err)
	}
}

func (o options) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func (o options) settings(extra string) string {
	d := func(v time.Duration, def string) string {
		if v == 0 {
			return "default(" + def + ")"
		}
		return v.String()
	}
	return fmt.Sprintf("river MaxWorkers=%d FetchCooldown=%s FetchPollInterval=%s %s",
		o.Workers, d(o.fetchCooldown, "100ms"), d(o.fetchPoll, "1s"), extra)
}

// runPgx runs the bench in a fresh PostgreSQL schema that it drops afterwards.
func runPgx(ctx context.Context, o options) (res any, err error) {
	schema := "river_bench_" + harness.RandomSuffix()
	admin, err := pgx.Connect(ctx, o.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return nil, fmt.Errorf("create schema: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, derr := admin.Exec(dctx, "DROP SCHEMA "+schema+" CASCADE"); derr != nil && err == nil {
			err = fmt.Errorf("drop schema %s: %w", schema, derr)
		}
	}()
	cfg, err := pgxpool.ParseConfig(o.databaseURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	if o.poolMaxConns > 0 {
		cfg.MaxConns = int32(o.poolMaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	drv := riverpgxv5.New(pool)
	if err := migrate(ctx, drv); err != nil {
		return nil, err
	}
	countCompleted := func(ctx context.Context, q string) (int, error) {
		var n int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE queue = $1 AND state = 'completed'", q).Scan(&n)
		return n, err
	}
	extra := fmt.Sprintf("pool MaxConns=%d schema=%s", cfg.MaxConns, schema)
	return run(ctx, o, drv, "postgres", extra, countCompleted)
}

// runSQLite runs the bench on a fresh SQLite file in a temporary directory.
func runSQLite(ctx context.Context, o options) (any, error) {
	dir, err := os.MkdirTemp("", "river-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "bench.db")
	var name, dsn string
	switch o.sqliteLib {
	case "mattn":
		name, dsn = "sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=10000&_synchronous=NORMAL"
	case "modernc":
		name, dsn = "sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)"
	default:
		return nil, fmt.Errorf("--sqlite-lib must be mattn or modernc, got %q", o.sqliteLib)
	}
	db, err := sql.Open(name, dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	// The riversqlite documentation recommends one connection to avoid
	// SQLITE_BUSY errors from River's concurrent operations.
	db.SetMaxOpenConns(1)
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, err
	}
	if !strings.EqualFold(mode, "wal") {
		return nil, fmt.Errorf("sqlite: journal_mode is %s, want wal", mode)
	}
	drv := riversqlite.New(db)
	if err := migrate(ctx, drv); err != nil {
		return nil, err
	}
	countCompleted := func(ctx context.Context, q string) (int, error) {
		var n int
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM river_job WHERE queue = ? AND state = 'completed'", q).Scan(&n)
		return n, err
	}
	return run(ctx, o, drv, "sqlite", "sqlite-lib="+o.sqliteLib+" WAL synchronous=NORMAL MaxOpenConns=1", countCompleted)
}

func migrate[TTx any](ctx context.Context, drv riverdriver.Driver[TTx]) error {
	m, err := rivermigrate.New(drv, nil)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrate: %w", err)
	}
	return nil
}

func run[TTx any](ctx context.Context, o options, drv riverdriver.Driver[TTx], driverName, extra string,
	countCompleted func(context.Context, string) (int, error),
) (any, error) {
	if o.Mode == "throughput" {
		return throughput(ctx, o, drv, driverName, extra, countCompleted)
	}
	return latency(ctx, o, drv, driverName, extra)
}

func throughput[TTx any](ctx context.Context, o options, drv riverdriver.Driver[TTx], driverName, extra string,
	countCompleted func(context.Context, string) (int, error),
) (*harness.Throughput, error) {
	q := "bench_" + harness.RandomSuffix()
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(context.Context, *river.Job[noopArgs]) error { return nil }))

	// Insert with an insert-only client, in chunks of 10,000 as kiln does.
	ic, err := river.NewClient(drv, &river.Config{Workers: workers, Logger: o.logger()})
	if err != nil {
		return nil, err
	}
	const chunk = 10000
	params := make([]river.InsertManyParams, 0, chunk)
	start := time.Now()
	for left := o.Jobs; left > 0; {
		n := min(left, chunk)
		params = params[:0]
		for range n {
			params = append(params, river.InsertManyParams{Args: noopArgs{}, InsertOpts: &river.InsertOpts{Queue: q}})
		}
		if o.insert == "fast" {
			_, err = ic.InsertManyFast(ctx, params)
		} else {
			_, err = ic.InsertMany(ctx, params)
		}
		if err != nil {
			return nil, fmt.Errorf("insert: %w", err)
		}
		left -= n
	}
	insertDur := time.Since(start)

	// Work. The clock stops at the N-th job_completed event, which River
	// emits after its completer has marked the jobs completed in the database.
	wc, err := workClient(o, drv, q, workers)
	if err != nil {
		return nil, err
	}
	events, cancelSub := wc.SubscribeConfig(&river.SubscribeConfig{
		Kinds:    []river.EventKind{river.EventKindJobCompleted},
		ChanSize: o.Jobs + 1000, // large enough that no event is dropped
	})
	defer cancelSub()
	finished := make(chan struct{})
	go func() {
		n := 0
		for range events {
			if n++; n == o.Jobs {
				close(finished)
				return
			}
		}
	}()
	start = time.Now()
	if err := wc.Start(ctx); err != nil {
		return nil, err
	}
	select {
	case <-finished:
	case <-time.After(30 * time.Minute):
		_ = stop(wc)
		return nil, errors.New("jobs not completed within 30m")
	}
	workDur := time.Since(start)
	if err := stop(wc); err != nil {
		return nil, err
	}
	got, err := countCompleted(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if got != o.Jobs {
		return nil, fmt.Errorf("verify: %d of %d jobs completed in the database", got, o.Jobs)
	}
	method := "InsertManyFast"
	if o.insert == "many" {
		method = "InsertMany"
	}
	if driverName == "postgres" && o.insert == "fast" {
		method += " (COPY FROM)"
	}
	return &harness.Throughput{
		System: "river", Mode: "throughput", Driver: driverName, Jobs: o.Jobs, Workers: o.Workers,
		InsertJobsPerS: harness.Round(float64(o.Jobs) / insertDur.Seconds()),
		WorkJobsPerS:   harness.Round(float64(o.Jobs) / workDur.Seconds()),
		PeakRSSMB:      harness.PeakRSSMB(),
		InsertMethod:   method + ", chunks of 10000",
		Settings:       o.settings(extra),
	}, nil
}

// workClient is the River client that works queue q with the run's
// worker slots and fetch settings.
func workClient[TTx any](o options, drv riverdriver.Driver[TTx], q string, workers *river.Workers) (*river.Client[TTx], error) {
	return river.NewClient(drv, &river.Config{
		Workers:           workers,
		Queues:            map[string]river.QueueConfig{q: {MaxWorkers: o.Workers}},
		FetchCooldown:     o.fetchCooldown,
		FetchPollInterval: o.fetchPoll,
		Logger:            o.logger(),
	})
}

func latency[TTx any](ctx context.Context, o options, drv riverdriver.Driver[TTx], driverName, extra string) (*harness.Latency, error) {
	q := "bench_" + harness.RandomSuffix()
	rec := harness.NewRecorder(int(o.Rate*o.Duration.Seconds()) + 1)
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(_ context.Context, j *river.Job[noopArgs]) error {
		rec.Observe(time.Now(), j.Args.T)
		return nil
	}))
	c, err := workClient(o, drv, q, workers)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	defer func() { _ = stop(c) }()
	total, p50, p95, p99, mx, err := harness.RunLatency(ctx, o.Rate, o.Duration, rec, func(ctx context.Context, ts int64) error {
		_, err := c.Insert(ctx, noopArgs{T: ts}, &river.InsertOpts{Queue: q})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &harness.Latency{
		System: "river", Mode: "latency", Driver: driverName, Jobs: total, Rate: o.Rate,
		P50: p50, P95: p95, P99: p99, Max: mx, Settings: o.settings(extra),
	}, nil
}

func stop[TTx any](c *river.Client[TTx]) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Stop(ctx)
}
