package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/cpupool"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/queue"
)

// Jobs is what the API needs of the job engine; *queue.Client satisfies
// it.
type Jobs interface {
	Insert(ctx context.Context, p queue.InsertParams) (queue.InsertResult, error)
	InsertTx(ctx context.Context, tx any, ps ...queue.InsertParams) ([]queue.InsertResult, error)
	ValidateInsert(p queue.InsertParams) error
	Get(ctx context.Context, id int64) (*queue.Job, error)
	List(ctx context.Context, p queue.ListParams) ([]*queue.Job, error)
	Cancel(ctx context.Context, id int64) (*queue.Job, error)
	CancelTx(ctx context.Context, tx any, id int64) (*queue.Job, error)
	Retry(ctx context.Context, id int64) (*queue.Job, error)
	RetryTx(ctx context.Context, tx any, id int64) (*queue.Job, error)
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
	Jobs Jobs
	// DB, if set, is the database the engine's tables are in: POST
	// /api/v1/jobs then inserts in a transaction of it that also records
	// the job for the request's Idempotency-Key (see database.Once).
	DB     *database.DB
	Logger *slog.Logger
	// BodyLimit caps request bodies (default [DefaultBodyLimit]).
	BodyLimit int64
	// CPU runs the API's CPU-bound work (GET /api/v1/compute/...); nil
	// means [cpupool.Default]. Requests beyond its workers and wait queue
	// are answered 503 at once.
	CPU *cpupool.Pool
	// Auth checks the bearer token of every route but the public ones;
	// nil serves every route without authentication (for embedding and
	// tests; kiln serve always sets it).
	Auth Authenticator
	// Idempotency, if set, wraps every POST route after authentication
	// (Idempotency-Key handling); the answers it declares are listed on
	// every POST operation of the OpenAPI document.
	Idempotency RouteMiddleware
	// Modules are the feature modules served besides jobs and queues.
	Modules []Module
	// Observers are told of every request (metrics, slow-request log).
	Observers []Observer
	// Middleware wraps every request inside the request id, access log
	// and panic recovery, outermost first (tracing). [RoutePattern] tells
	// it, once the handler has returned, which route matched.
	Middleware []func(http.Handler) http.Handler
}

// Observer is told when a request starts and when it is done, with the
// route pattern that matched ("GET /api/v1/users/{id}", or "unmatched";
// never the raw path), the status and the duration. Calls are
// synchronous, on the request's goroutine: keep them cheap.
type Observer interface {
	RequestStarted()
	RequestDone(ctx context.Context, method, route string, status int, d time.Duration)
}

// API is the HTTP API as an http.Handler.
type API struct {
	jobs     Jobs
	db       *database.DB
	cpu      *cpupool.Pool
	log      *slog.Logger
	auth     Authenticator
	idem     RouteMiddleware
	mux      *http.ServeMux
	patterns []string
	// answers holds, by pattern, the statuses the middleware around the
	// route may answer in place of its handler (see [API.DocMismatches]).
	answers map[string][]string
	handler http.Handler
	doc     []byte
	// bodyLimit is Config.BodyLimit, for routes that set none.
	bodyLimit int64
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
	a := &API{jobs: cfg.Jobs, db: cfg.DB, cpu: cfg.CPU, log: cfg.Logger, auth: cfg.Auth, idem: cfg.Idempotency, mux: http.NewServeMux(), answers: map[string][]string{}, bodyLimit: cfg.BodyLimit}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(openAPIDoc))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("httpapi: decode OpenAPI document: %w", err)
	}
	routes := a.routes()
	for _, m := range cfg.Modules {
		routes = append(routes, m.Routes()...)
		if err := mergeOpenAPI(doc, m.OpenAPI()); err != nil {
			return nil, fmt.Errorf("httpapi: %w", err)
		}
	}
	for _, rt := range routes {
		scope, answers, err := a.route(rt)
		if err != nil {
			return nil, err
		}
		method, path, _ := strings.Cut(rt.Pattern, " ")
		describeRoute(doc, method, path, scope, answers, a.idem != nil)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("httpapi: encode OpenAPI document: %w", err)
	}
	a.doc = append(b, '\n')
	var inner http.Handler = problemMux(a.mux)
	for i := len(cfg.Middleware) - 1; i >= 0; i-- {
		inner = cfg.Middleware[i](inner)
	}
	a.handler = withRequest(a.log, withAccessLog(cfg.Observers, inner))
	return a, nil
}

// routes is the list of the API's own routes (jobs, queues, kinds,
// compute); modules add theirs. The OpenAPI document must describe
// exactly the registered routes (see TestOpenAPIMatchesRoutes).
func (a *API) routes() []Route {
	return []Route{
		{Pattern: "GET " + Prefix + "/openapi.json", Handler: a.openAPI},
		{Pattern: "POST " + Prefix + "/jobs", Handler: a.createJob},
		{Pattern: "GET " + Prefix + "/jobs", Handler: a.listJobs},
		{Pattern: "GET " + Prefix + "/jobs/{id}", Handler: a.getJob},
		{Pattern: "DELETE " + Prefix + "/jobs/{id}", Handler: a.deleteJob},
		{Pattern: "POST " + Prefix + "/jobs/{id}/retry", Handler: a.retryJob},
		{Pattern: "POST " + Prefix + "/jobs/{id}/cancel", Handler: a.cancelJob},
		{Pattern: "GET " + Prefix + "/queues", Handler: a.listQueues},
		{Pattern: "POST " + Prefix + "/queues/{name}/pause", Handler: a.pauseQueue, Scope: ScopeAdmin},
		{Pattern: "POST " + Prefix + "/queues/{name}/resume", Handler: a.resumeQueue, Scope: ScopeAdmin},
		{Pattern: "GET " + Prefix + "/kinds", Handler: a.listKinds},
		{Pattern: "GET " + Prefix + "/compute/fibonacci", Handler: a.fibonacci},
	}
}

// route registers rt behind authentication for its scope and, for POST,
// idempotency. It returns the scope the route needs and the responses its
// middleware may give in place of its handler, by status.
func (a *API) route(rt Route) (Scope, map[string]any, error) {
	method, path, ok := strings.Cut(rt.Pattern, " ")
	if !ok || !strings.HasPrefix(path, Prefix+"/") {
		return 0, nil, fmt.Errorf("httpapi: route %q must be \"METHOD %s/...\"", rt.Pattern, Prefix)
	}
	scope := rt.Scope
	if scope == ScopePublic {
		scope = DefaultScope(method)
	}
	if rt.BodyLimit < 0 || rt.ReadTimeout < 0 {
		return 0, nil, fmt.Errorf("httpapi: route %q: negative BodyLimit or ReadTimeout", rt.Pattern)
	}
	var h http.Handler = rt.Handler
	idem := method == http.MethodPost && a.idem != nil
	if idem {
		h = a.idem.Middleware(h)
	}
	h = withAuth(a.auth, scope, h)
	if rt.ReadTimeout > 0 {
		h = withReadTimeout(rt.ReadTimeout, h)
	}
	limit := a.bodyLimit
	if rt.BodyLimit > 0 {
		limit = rt.BodyLimit
	}
	a.mux.Handle(rt.Pattern, setRoute(withBodyLimit(limit, h)))
	a.patterns = append(a.patterns, rt.Pattern)
	answers := a.middlewareAnswers(scope, limit, idem)
	a.answers[rt.Pattern] = slices.Sorted(maps.Keys(answers))
	return scope, answers, nil
}

func (a *API) handle(pattern string, h http.Handler) {
	a.mux.Handle(pattern, setRoute(withBodyLimit(a.bodyLimit, h)))
	a.patterns = append(a.patterns, pattern)
}

// Handle registers a public route outside the API's versioned surface
// (health checks) so that it shares the middleware: request ids, access
// log, panic recovery and problem+json errors. It needs no token.
func (a *API) Handle(pattern string, h http.Handler) { a.handle(pattern, h) }

// HandleScoped registers a route outside the API's versioned surface
// (GET /metrics) that needs a token with scope, like the API's own.
func (a *API) HandleScoped(pattern string, scope Scope, h http.Handler) {
	a.handle(pattern, withAuth(a.auth, scope, h))
}

// Doc returns the OpenAPI document of every registered route.
func (a *API) Doc() []byte { return a.doc }

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
// then closes the remaining connections. Requests the HTTP server refuses
// itself, before any handler runs (a malformed request line or header,
// headers over MaxHeaderBytes, an unsupported transfer coding or HTTP
// version), are answered with problems too; ln must therefore carry plain
// HTTP, not TLS.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(problemListener{ln, srv.MaxHeaderBytes}) }()
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
