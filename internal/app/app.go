// Package app assembles kiln from its features: the job kinds every
// process registers, and the HTTP API with its modules (users, orders,
// reports, images, webhooks, videos, runtime figures), token
// authentication, Idempotency-Key handling and request observers, all
// over one database. Package cli calls it, and so do the tests that need
// the whole API.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/idempotency"
	"github.com/kilnhq/kiln/internal/images"
	"github.com/kilnhq/kiln/internal/metrics"
	"github.com/kilnhq/kiln/internal/monitor"
	"github.com/kilnhq/kiln/internal/orders"
	"github.com/kilnhq/kiln/internal/reports"
	"github.com/kilnhq/kiln/internal/tokens"
	"github.com/kilnhq/kiln/internal/users"
	"github.com/kilnhq/kiln/internal/videos"
	"github.com/kilnhq/kiln/internal/webhooks"
	"github.com/kilnhq/kiln/queue"
)

// Config configures [New].
type Config struct {
	// Jobs is the engine client, whose workers [RegisterKinds] filled
	// from Base.
	Jobs *queue.Client
	// Base is what the features share: the database, the files, the
	// kinds' settings, the metrics registry and the clock.
	Base *Base
	// Logger receives the API's logs; nil discards them.
	Logger *slog.Logger
	// BodyLimit caps request bodies (default httpapi.DefaultBodyLimit).
	BodyLimit int64
	// NoAuth serves every route without a token: only for tests and for
	// embedding behind a layer that authenticates.
	NoAuth bool
	// TokenCacheTTL bounds how long a revoked token keeps working in a
	// process that verified it recently (default 5s).
	TokenCacheTTL time.Duration
	// Metrics, if set, observes every request.
	Metrics *metrics.Metrics
	// Slow, if set, logs slow requests.
	Slow *monitor.SlowLog
	// Monitor, if set, serves GET /api/v1/runtime.
	Monitor *monitor.Monitor
	// Middleware wraps every request inside the request id, access log
	// and panic recovery, outermost first (tracing); see
	// httpapi.Config.Middleware.
	Middleware []func(http.Handler) http.Handler
}

// App is the assembled HTTP side of kiln.
type App struct {
	// API serves every route; mount health checks on it with Handle.
	API         *httpapi.API
	Tokens      *tokens.Service
	Idempotency *idempotency.Store
	Blobs       *blobs.Store
}

// New assembles the API.
func New(cfg Config) (*App, error) {
	if cfg.Jobs == nil || cfg.Base == nil || cfg.Base.DB == nil {
		return nil, errors.New("app: Config.Jobs and Config.Base (from NewBase) are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := cfg.Base
	db := b.DB
	a := &App{
		Tokens:      tokens.NewService(tokens.NewStore(db), tokens.Options{Now: b.Now, CacheTTL: cfg.TokenCacheTTL, Logger: cfg.Logger}),
		Idempotency: idempotency.NewStore(db, idempotency.Options{Now: b.Now, Logger: cfg.Logger}),
		Blobs:       b.Blobs,
	}
	modules, err := newModules(cfg.Jobs, b)
	if err != nil {
		_ = a.Tokens.Close()
		return nil, err
	}
	hc := httpapi.Config{
		Jobs:        cfg.Jobs,
		DB:          db,
		Logger:      cfg.Logger,
		BodyLimit:   cfg.BodyLimit,
		Idempotency: a.Idempotency,
		Middleware:  cfg.Middleware,
		Modules:     modules,
	}
	if cfg.Monitor != nil {
		hc.Modules = append(hc.Modules, cfg.Monitor.Module())
	}
	if cfg.Metrics != nil {
		hc.Observers = append(hc.Observers, metricsObserver{cfg.Metrics})
	}
	if cfg.Slow != nil {
		hc.Observers = append(hc.Observers, slowObserver{cfg.Slow})
	}
	if !cfg.NoAuth {
		hc.Auth = a.Tokens
	}
	api, err := httpapi.New(hc)
	if err != nil {
		_ = a.Tokens.Close()
		return nil, err
	}
	a.API = api
	return a, nil
}

// newModules returns the feature modules over b, enqueueing with jobs.
func newModules(jobs *queue.Client, b *Base) ([]httpapi.Module, error) {
	db, bs, k := b.DB, b.Blobs, b.Kinds
	io, wo, vo := k.Images, k.Webhooks, k.Videos
	if io.Now == nil {
		io.Now = b.Now
	}
	wo.Now, vo.Now = b.Now, b.Now
	us, uerr := users.NewService(db, users.Options{Now: b.Now})
	os, oerr := orders.NewService(db, jobs, orders.Options{Now: b.Now})
	rs, rerr := reports.NewService(db, jobs, bs, reports.Options{Now: b.Now})
	is, ierr := images.NewService(db, jobs, bs, io)
	ws, werr := webhooks.NewService(db, jobs, wo)
	vs, verr := videos.NewService(db, jobs, bs, vo)
	if err := errors.Join(uerr, oerr, rerr, ierr, werr, verr); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	return []httpapi.Module{
		users.NewHandler(us),
		orders.NewHandler(os),
		reports.NewHandler(rs),
		images.NewHandler(is),
		webhooks.NewHandler(ws),
		videos.NewHandler(vs),
	}, nil
}

// Run does the API's background work until ctx is done: pruning expired
// idempotency keys, and deleting blobs that an interrupted upload or
// report left incomplete for a day.
func (a *App) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Idempotency.Run(ctx)
	}()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case <-t.C:
			_, _ = a.Blobs.PurgeIncomplete(ctx, time.Now().Add(-24*time.Hour))
		}
	}
}

// Close waits for the token service's pending writes (last use times).
// Call it after the HTTP server has stopped and before the database
// closes.
func (a *App) Close() error { return a.Tokens.Close() }

type metricsObserver struct{ m *metrics.Metrics }

func (o metricsObserver) RequestStarted() { o.m.RequestStarted() }
func (o metricsObserver) RequestDone(_ context.Context, method, route string, status int, d time.Duration) {
	o.m.RequestDone(method, route, status, d)
}

type slowObserver struct{ s *monitor.SlowLog }

func (slowObserver) RequestStarted() {}
func (o slowObserver) RequestDone(ctx context.Context, method, route string, status int, d time.Duration) {
	o.s.Request(ctx, httpapi.RequestID(ctx), method, route, status, d)
}
