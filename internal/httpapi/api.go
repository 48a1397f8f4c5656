package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/kilnhq/kiln/internal/cpupool"
	"github.com/kilnhq/kiln/queue"
)

// Jobs is what the API needs of the job engine; *queue.Client satisfies
// it.
type Jobs interface {
	Insert(ctx context.Context, p queue.InsertParams) (queue.InsertResult, error)
	ValidateInsert(p queue.InsertParams) error
	Get(ctx context.Context, id int64) (*queue.Job, error)
	List(ctx context.Context, p queue.ListParams) ([]*queue.Job, error)
	Cancel(ctx context.Context, id int64) (*queue.Job, error)
	Retry(ctx context.Context, id int64) (*queue.Job, error)
	Delete(ctx context.Context, id int64) (*queue.Job, error)
	Pause(ctx context.Context, queue string) error
	Resume(ctx context.Context, queue string) error
	Queues(ctx context.Context) ([]queue.QueueStats, error)
	Workers() *queue.Workers
}

var _ Jobs = (*queue.Client)(nil)

// DefaultBodyLimit is the largest request body accepted by default.
const DefaultBodyLimit = 1 << 20

// Prefix is the path every API route starts with.
const Prefix = "/api/v1"

// Config configures an [API].
type Config struct {
	Jobs   Jobs
	Logger *slog.Logger
	// BodyLimit caps request bodies (default [DefaultBodyLimit]).
	BodyLimit int64
	// CPU runs the API's CPU-bound work (GET /api/v1/compute/...); nil
	// means [cpupool.Default]. Requests beyond its workers and wait queue
	// are answered 503 at once.
	CPU *cpupool.Pool
}

// API is the HTTP API as an http.Handler.
type API struct {
	jobs     Jobs
	cpu      *cpupool.Pool
	log      *slog.Logger
	mux      *http.ServeMux
	patterns []string
	handler  http.Handler
}

// New returns the API with every route of [API.routes] registered.
func New(cfg Config) (*API, error) {
	if cfg.Jobs == nil {
		return nil, errors.New("httpapi: Config.Jobs is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = discardLogger
	}
	if cfg.BodyLimit <= 0 {
		cfg.BodyLimit = DefaultBodyLimit
	}
	if cfg.CPU == nil {
		cfg.CPU = cpupool.Default()
	}
	a := &API{jobs: cfg.Jobs, cpu: cfg.CPU, log: cfg.Logger, mux: http.NewServeMux()}
	for _, rt := range a.routes() {
		a.handle(rt.pattern, rt.handler)
	}
	a.handler = withRequest(a.log, withAccessLog(withBodyLimit(cfg.BodyLimit, problemMux(a.mux))))
	return a, nil
}

type routeDef struct {
	pattern string
	handler http.HandlerFunc
}

// routes is the one list of API routes. The OpenAPI document must
// describe exactly these (see TestOpenAPIMatchesRoutes).
func (a *API) routes() []routeDef {
	return []routeDef{
		{"GET " + Prefix + "/openapi.json", a.openAPI},
		{"POST " + Prefix + "/jobs", a.createJob},
		{"GET " + Prefix + "/jobs", a.listJobs},
		{"GET " + Prefix + "/jobs/{id}", a.getJob},
		{"DELETE " + Prefix + "/jobs/{id}", a.deleteJob},
		{"POST " + Prefix + "/jobs/{id}/retry", a.retryJob},
		{"POST " + Prefix + "/jobs/{id}/cancel", a.cancelJob},
		{"GET " + Prefix + "/queues", a.listQueues},
		{"POST " + Prefix + "/queues/{name}/pause", a.pauseQueue},
		{"POST " + Prefix + "/queues/{name}/resume", a.resumeQueue},
		{"GET " + Prefix + "/kinds", a.listKinds},
		{"GET " + Prefix + "/compute/fibonacci", a.fibonacci},
	}
}

func (a *API) handle(pattern string, h http.Handler) {
	a.mux.Handle(pattern, setRoute(h))
	a.patterns = append(a.patterns, pattern)
}

// Handle registers a route outside the API's versioned surface (health
// checks) so that it shares the middleware: request ids, access log,
// panic recovery and problem+json errors.
func (a *API) Handle(pattern string, h http.Handler) { a.handle(pattern, h) }

// Patterns returns every registered pattern, in registration order.
func (a *API) Patterns() []string { return append([]string(nil), a.patterns...) }

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// NewServer returns an http.Server for h with timeouts a slow client
// cannot exhaust: headers must arrive within 5s, the whole request within
// 30s, the response must be written within 60s, idle keep-alive
// connections close after 2m, and headers are capped at 64 KiB.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = discardLogger
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Serve serves srv on ln until ctx is done, then shuts down gracefully:
// it stops accepting, lets in-flight requests finish for up to grace, and
// then closes the remaining connections.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		<-errc
		return fmt.Errorf("http shutdown: %w", err)
	}
	<-errc
	return nil
}
