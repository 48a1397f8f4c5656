package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/jobkinds"
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
}

func (f *engineFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.queues, "queues", "default=100", "queues to work and their concurrency, as name=workers,name=workers")
	fl.DurationVar(&f.lease, "lease", 30*time.Second, "how long a claimed job is held without a heartbeat before it is rescued")
	fl.DurationVar(&f.pollInterval, "poll-interval", time.Second, "how often to look for jobs no notification announced")
	fl.DurationVar(&f.jobTimeout, "job-timeout", 15*time.Minute, "default per-attempt timeout for kinds that set none (negative: none)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long running jobs may finish before they are handed back")
	fl.StringVar(&f.id, "id", "", "name of this process in leases and leadership (default host-pid-random)")
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
	return qs, log, nil
}

func (f *engineFlags) config(s *store, qs map[string]queue.QueueConfig, log *slog.Logger) queue.Config {
	w := queue.NewWorkers()
	jobkinds.Register(w)
	return queue.Config{
		Driver: s.driver, Workers: w, Queues: qs, ID: f.id, Logger: log,
		LeaseDuration: f.lease, PollInterval: f.pollInterval, JobTimeout: f.jobTimeout,
	}
}

// runEngine starts a client, calls during (if any) while it runs, and stops
// it gracefully when ctx is done.
func runEngine(ctx context.Context, g *globals, f *engineFlags, during func(context.Context, *queue.Client, *slog.Logger) error) error {
	qs, log, err := f.check(g)
	if err != nil {
		return err
	}
	s, err := openStore(ctx, g.resolveDB(), true, log)
	if err != nil {
		return err
	}
	defer s.Close()
	cfg := f.config(s, qs, log)
	c, err := queue.New(cfg)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	names := make([]string, 0, len(cfg.Queues))
	for n, q := range cfg.Queues {
		names = append(names, fmt.Sprintf("%s=%d", n, q.MaxWorkers))
	}
	sort.Strings(names)
	log.Info("job engine started", "database", s.display, "queues", strings.Join(names, ","), "kinds", strings.Join(cfg.Workers.Kinds(), ","), "id", c.ID())
	var runErr error
	if during != nil {
		runErr = during(ctx, c, log)
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
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Work jobs without serving HTTP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEngine(cmd.Context(), g, f, nil)
		},
	}
	f.register(cmd)
	return cmd
}

func newServeCmd(g *globals) *cobra.Command {
	f := &engineFlags{}
	var addr string
	var unauthenticatedAPI bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve HTTP and work jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := f.check(g); err != nil {
				return err
			}
			// Listen before the engine starts: a taken port must not first
			// claim jobs and then wait for them to finish before failing.
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			defer ln.Close()
			return runEngine(cmd.Context(), g, f, func(ctx context.Context, c *queue.Client, log *slog.Logger) error {
				if unauthenticatedAPI {
					log.Warn("the API has no authentication yet and --unauthenticated-api serves it to every host that can reach " + addr)
				}
				return serveHTTP(ctx, ln, c, log, g, unauthenticatedAPI)
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&addr, "addr", ":8080", "address to serve HTTP on")
	cmd.Flags().BoolVar(&unauthenticatedAPI, "unauthenticated-api", false, "serve the API (which has no tokens yet) to other hosts, not only to this machine")
	return cmd
}

// serveHTTP serves the health endpoints and the API (under /api/v1) on ln
// until ctx is done, then lets in-flight requests finish.
//
// Until the API has tokens, /api/ answers only requests from this machine
// (a loopback peer) unless unauthenticatedAPI is set: anyone who can reach
// the port could otherwise cancel, delete and pause jobs.
func serveHTTP(ctx context.Context, ln net.Listener, c *queue.Client, log *slog.Logger, g *globals, unauthenticatedAPI bool) error {
	api, err := httpapi.New(httpapi.Config{Jobs: c, Logger: log})
	if err != nil {
		return err
	}
	api.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	}))
	api.Handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		cur, latest, err := c.Driver().SchemaVersion(rctx)
		switch {
		case ctx.Err() != nil:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"shutting down"}`)
		case err != nil:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"database unreachable"}`)
		case cur != latest:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"status":"schema version %d, want %d"}`+"\n", cur, latest)
		default:
			fmt.Fprintln(w, `{"status":"ready"}`)
		}
	}))
	var h http.Handler = api
	if !unauthenticatedAPI {
		h = localAPIOnly(api)
	}
	srv := httpapi.NewServer(h, log)
	fmt.Fprintf(g.stdout, "kiln listening on http://%s (database: %s)\n", displayAddr(ln.Addr()), c.Driver().Name()+" "+dbPath(c))
	if err := httpapi.Serve(ctx, srv, ln, 10*time.Second); err != nil {
		if ctx.Err() == nil {
			return err
		}
		log.Warn("http shutdown", "err", err)
	}
	return nil
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

// localAPIOnly refuses /api/ requests whose peer is not a loopback address
// with a 403 problem; health checks stay open to every peer.
func localAPIOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") && !loopbackPeer(r.RemoteAddr) {
			httpapi.WriteError(w, r, httpapi.Errorf(httpapi.CodeForbidden,
				"the API has no authentication yet, so it answers only requests from this machine; start kiln serve with --unauthenticated-api to serve other hosts"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func loopbackPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
