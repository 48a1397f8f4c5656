package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnhq/kiln/internal/admin"
	"github.com/kilnhq/kiln/internal/app"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/queue"
)

// engineFlags are the job engine settings of serve and worker.
type engineFlags struct {
	queues          string
	lease           time.Duration
	pollInterval    time.Duration
	jobTimeout      time.Duration
	shutdownTimeout time.Duration
	id              string
	kinds           kindFlags
	// elsewhere are queues another process is known to work (serve's
	// isolated worker): no warning that this one does not.
	elsewhere map[string]queue.QueueConfig
	// quietUnworked turns that warning off (in serve's isolated worker).
	quietUnworked bool
}

func (f *engineFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.queues, "queues", defaultQueues(runtime.GOMAXPROCS(0)), "queues to work and their concurrency, as name=workers,name=workers (CPU-bound kinds have queues of their own, sized to the CPUs)")
	fl.DurationVar(&f.lease, "lease", 30*time.Second, "how long a claimed job is held without a heartbeat before it is rescued")
	fl.DurationVar(&f.pollInterval, "poll-interval", time.Second, "how often to look for jobs no notification announced")
	fl.DurationVar(&f.jobTimeout, "job-timeout", 15*time.Minute, "default per-attempt timeout for kinds that set none (negative: none)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long running jobs may finish before they are handed back")
	fl.StringVar(&f.id, "id", "", "name of this process in leases and leadership (default host-pid-random)")
	f.kinds.register(cmd)
}

// defaultQueues is the default of --queues on a machine with procs CPUs:
// I/O-bound work shares default (100 workers), and the built-in kinds'
// own queues get what suits their work ([app.Queues]).
func defaultQueues(procs int) string {
	parts := []string{queue.DefaultQueue + "=100"}
	for name, n := range app.Queues(procs) {
		parts = append(parts, fmt.Sprintf("%s=%d", name, n))
	}
	sort.Strings(parts[1:])
	return strings.Join(parts, ",")
}

// unworkedQueues returns, for each kind registered on w whose queue is
// not in qs, "kind (queue)": those jobs would wait forever here.
func unworkedQueues(w *queue.Workers, qs map[string]queue.QueueConfig) []string {
	var out []string
	for _, k := range w.Kinds() {
		kc, _ := w.Kind(k)
		q := kc.Queue
		if q == "" {
			q = queue.DefaultQueue
		}
		if _, ok := qs[q]; !ok {
			out = append(out, fmt.Sprintf("%s (queue %s)", k, q))
		}
	}
	return out
}

// parseQueues parses "name=N,name=N".
func parseQueues(s string) (map[string]queue.QueueConfig, error) {
	out := map[string]queue.QueueConfig{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, n, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, usagef("--queues: %q is not name=workers", part)
		}
		if !validQueueName(name) {
			return nil, usagef("--queues: queue name %q must be 1-%d printable characters without spaces", name, queue.MaxQueueLength)
		}
		w, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || w < 1 || w > 10000 {
			return nil, usagef("--queues: workers for %q must be a number from 1 to 10000, got %q", name, n)
		}
		if _, dup := out[name]; dup {
			return nil, usagef("--queues: queue %q given twice", name)
		}
		out[name] = queue.QueueConfig{MaxWorkers: w}
	}
	if len(out) == 0 {
		return nil, usagef("--queues: no queue given")
	}
	return out, nil
}

// validQueueName mirrors the engine's rule for queue names (printable
// ASCII without spaces), so that a bad --queues is a usage error reported
// before the database is touched.
func validQueueName(s string) bool {
	if s == "" || len(s) > queue.MaxQueueLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// check validates the engine flags and the logging flags and returns the
// queues and the logger. It touches no database, so that a mistyped flag
// neither creates nor migrates one.
func (f *engineFlags) check(g *globals) (map[string]queue.QueueConfig, *slog.Logger, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	qs, err := parseQueues(f.queues)
	if err != nil {
		return nil, nil, err
	}
	if f.lease < 3*time.Second {
		return nil, nil, usagef("--lease must be at least 3s, got %s", f.lease)
	}
	if f.pollInterval < time.Millisecond {
		return nil, nil, usagef("--poll-interval must be at least 1ms, got %s", f.pollInterval)
	}
	if f.shutdownTimeout < 0 {
		return nil, nil, usagef("--shutdown-timeout must not be negative")
	}
	if _, err := f.kinds.check(); err != nil {
		return nil, nil, err
	}
	return qs, log, nil
}

func (f *engineFlags) config(w *queue.Workers, s *store, qs map[string]queue.QueueConfig, log *slog.Logger) queue.Config {
	return queue.Config{
		Driver: s.driver, Workers: w, Queues: qs, ID: f.id, Logger: log,
		LeaseDuration: f.lease, PollInterval: f.pollInterval, JobTimeout: f.jobTimeout,
	}
}

// engine is what runs while serve or worker is up.
type engine struct {
	client *queue.Client
	store  *store
	log    *slog.Logger
	tel    *telemetry
	base   *app.Base
}

// runEngine starts a client and its telemetry, calls during (if any) while
// it runs, and stops both gracefully when ctx is done.
func runEngine(ctx context.Context, g *globals, f *engineFlags, t *telemetryFlags, during func(context.Context, *engine) error) error {
	qs, log, err := f.check(g)
	if err != nil {
		return err
	}
	if err := t.check(); err != nil {
		return err
	}
	// Top to bottom: telemetry (so that everything after can be
	// observed and register metrics), the database, the kinds' settings
	// and workers, the engine; serve's during builds the API on them.
	tel, err := t.start(ctx, log)
	if err != nil {
		return err
	}
	stopTel := sync.OnceFunc(tel.stop) // after the engine, before the database
	defer stopTel()
	s, err := openStore(ctx, g.resolveDB(), true, log)
	if err != nil {
		return err
	}
	defer s.Close()
	defer stopTel()
	kinds, err := f.kinds.kinds(tel.tracing, log, during != nil)
	if err != nil {
		return err
	}
	base := app.NewBase(s.app, kinds, tel.registerer(), nil)
	w, err := g.workers(base)
	if err != nil {
		return err
	}
	cfg := f.config(w, s, qs, log)
	tel.engineHooks(&cfg)
	c, err := queue.New(cfg)
	if err != nil {
		return err
	}
	tel.observe(c)
	if err := c.Start(ctx); err != nil {
		return err
	}
	names := make([]string, 0, len(cfg.Queues))
	for n, q := range cfg.Queues {
		names = append(names, fmt.Sprintf("%s=%d", n, q.MaxWorkers))
	}
	sort.Strings(names)
	attrs := []any{"database", s.display, "queues", strings.Join(names, ","), "kinds", strings.Join(cfg.Workers.Kinds(), ","), "id", c.ID()}
	if tel.admin != nil {
		attrs = append(attrs, "admin", "http://"+tel.admin.Addr())
	}
	log.Info("job engine started", attrs...)
	for _, k := range cfg.Workers.Kinds() {
		if kc, _ := cfg.Workers.Kind(k); kc.Unavailable != nil {
			log.Warn("job kind unavailable: enqueueing it is refused", "kind", k, "reason", kc.Unavailable.Error())
		}
	}
	worked := maps.Clone(cfg.Queues)
	maps.Copy(worked, f.elsewhere)
	if missing := unworkedQueues(cfg.Workers, worked); len(missing) > 0 && !f.quietUnworked {
		log.Warn("some kinds go to queues this process does not work; another process must, or add them to --queues",
			"kinds", strings.Join(missing, ", "))
	}
	var runErr error
	if during != nil {
		runErr = during(ctx, &engine{client: c, store: s, log: log, tel: tel, base: base})
	} else {
		<-ctx.Done()
	}
	log.Info("shutting down: no new jobs are claimed; running jobs may finish (signal again to stop at once)", "timeout", f.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	if err := c.Stop(sctx); err != nil {
		return errors.Join(runErr, err)
	}
	log.Info("stopped")
	return runErr
}

func newWorkerCmd(g *globals) *cobra.Command {
	f := &engineFlags{}
	t := &telemetryFlags{}
	var supervised bool
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Work jobs without serving HTTP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if supervised {
				log, err := g.logger()
				if err != nil {
					return err
				}
				// Serve stops this worker by closing its stdin; signals
				// sent to serve's whole process group are serve's to act
				// on, and a second one would cut this shutdown short.
				signal.Ignore(os.Interrupt, syscall.SIGTERM)
				ctx = exitOnStdinEOF(ctx, cmd.InOrStdin(), log)
				f.quietUnworked = true // serve warns for the rest
			}
			return runEngine(ctx, g, f, t, nil)
		},
	}
	f.register(cmd)
	t.register(cmd, "")
	// Set by serve for its --isolate-queues worker.
	cmd.Flags().BoolVar(&supervised, "supervised", false, "started by kiln serve --isolate-queues: shut down when standard input ends")
	_ = cmd.Flags().MarkHidden("supervised")
	return cmd
}

func newServeCmd(g *globals) *cobra.Command {
	f := &engineFlags{}
	t := &telemetryFlags{}
	iso := &isolateFlags{}
	var addr string
	var drain time.Duration
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve HTTP and work jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			qs, log, err := f.check(g)
			if err != nil {
				return err
			}
			own, isolated, err := iso.split(qs)
			if err != nil {
				return err
			}
			if err := t.check(); err != nil {
				return err
			}
			if isolated != nil {
				if err := iso.checkAdmin(t.adminAddr, t.adminToken); err != nil {
					return err
				}
			}
			if drain < 0 {
				return usagef("--drain-delay must not be negative")
			}
			// Listen before the engine starts: a taken port must not first
			// claim jobs and then wait for them to finish before failing.
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			defer ln.Close()
			serve := func(ctx context.Context) error {
				return runEngine(ctx, g, f, t, func(ctx context.Context, e *engine) error {
					return serveHTTP(ctx, ln, e, g, drain)
				})
			}
			if isolated == nil {
				return serve(cmd.Context())
			}
			sup, err := isolatedWorker(cmd, g, f, isolated, iso, log)
			if err != nil {
				return err
			}
			f.queues, f.elsewhere = queueList(own), isolated
			// The worker and serve shut down side by side, each within
			// its shutdown timeout.
			return runAlongside(cmd.Context(), sup, serve)
		},
	}
	f.register(cmd)
	iso.register(cmd)
	t.register(cmd, admin.DefaultAddr)
	cmd.Flags().StringVar(&addr, "addr", ":8080", "address to serve HTTP on")
	cmd.Flags().DurationVar(&drain, "drain-delay", 0, "on SIGTERM, answer /readyz with 503 and keep serving this long before closing the listener, so load balancers stop sending first")
	return cmd
}

// serveHTTP serves the health endpoints, the metrics and the API (under
// /api/v1) on ln until ctx is done. Then /readyz answers 503 while the API
// keeps serving for drain, and finally the listener closes and in-flight
// requests finish. Every API route needs a token; health checks need none.
func serveHTTP(ctx context.Context, ln net.Listener, e *engine, g *globals, drain time.Duration) error {
	c, log := e.client, e.log
	a, err := app.New(app.Config{
		Jobs: c, Base: e.base, Logger: log,
		Metrics: e.tel.metrics, Slow: e.tel.slow, Monitor: e.tel.monitor,
		Middleware: e.tel.httpMiddleware(),
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := a.Close(); err != nil {
			log.Warn("close token service", "err", err)
		}
	}()
	bg, stopBG := context.WithCancel(context.Background())
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		a.Run(bg)
	}()
	defer func() {
		stopBG()
		<-bgDone
	}()
	api := a.API
	api.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	}))
	api.Handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		cur, latest, err := c.Driver().SchemaVersion(rctx)
		var appErr error
		if err == nil {
			appErr = e.store.app.Check(rctx)
		}
		switch {
		case ctx.Err() != nil: // SIGTERM: draining
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"shutting down"}`)
		case err != nil:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"database unreachable"}`)
		case cur != latest:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"status":"schema version %d, want %d"}`+"\n", cur, latest)
		case appErr != nil:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"application schema not current"}`)
		default:
			fmt.Fprintln(w, `{"status":"ready"}`)
		}
	}))
	if e.tel.metrics != nil {
		api.HandleScoped("GET /metrics", httpapi.ScopeRead, e.tel.metrics.Handler())
	}
	srv := httpapi.NewServer(api, log)
	fmt.Fprintf(g.stdout, "kiln listening on http://%s (database: %s)\n", displayAddr(ln.Addr()), c.Driver().Name()+" "+dbPath(c))
	if n, err := a.Tokens.Count(ctx); err != nil {
		log.Warn("count API tokens", "err", err)
	} else if n == 0 {
		fmt.Fprintf(g.stdout, "no API tokens yet: every /api/v1 route answers 401. Create one with:\n  kiln token create --scope admin%s\n", dbFlagHint(g))
	}
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	go func() {
		select {
		case <-ctx.Done():
		case <-serveCtx.Done():
			return
		}
		if drain > 0 {
			log.Info("draining: /readyz answers 503; the API keeps serving", "for", drain.String())
			select {
			case <-time.After(drain):
			case <-serveCtx.Done():
			}
		}
		stopServing()
	}()
	if err := httpapi.Serve(serveCtx, srv, ln, 10*time.Second); err != nil {
		if ctx.Err() == nil {
			return err
		}
		log.Warn("http shutdown", "err", err)
	}
	return nil
}

// dbFlagHint repeats the database flags the user gave, so that a printed
// command works against the same database.
func dbFlagHint(g *globals) string {
	switch {
	case strings.TrimSpace(g.db) != "":
		if strings.Contains(strings.ToLower(g.db), "://") && !strings.HasPrefix(strings.ToLower(g.db), "sqlite://") {
			return " --db '" + redact(g.db) + "'"
		}
		return " --db " + g.db
	case g.dataDir != "./kiln-data" && g.dataDir != "kiln-data":
		return " --data-dir " + g.dataDir
	}
	return ""
}

// dbPath says where the client's database is: a SQLite file's path, or
// PostgreSQL's host:port/database (never a password).
func dbPath(c *queue.Client) string {
	switch d := c.Driver().(type) {
	case interface{ Path() string }:
		return d.Path()
	case interface{ Display() string }:
		return d.Display()
	}
	return ""
}

// displayAddr turns a wildcard listen address into one a user can open.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
