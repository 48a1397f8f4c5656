package tracing

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/kilnhq/kiln/internal/bench"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/internal/users"
	"github.com/kilnhq/kiln/queue"
)

// benchModes are the settings the benchmarks compare: tracing off, on
// and sampling every request (exporting to an exporter that discards),
// and on but sampling none.
var benchModes = []struct {
	name    string
	sampler sdktrace.Sampler // nil: off
}{
	{"off", nil},
	{"sampled", sdktrace.AlwaysSample()},
	{"unsampled", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))},
}

// benchTracing returns tracing for a mode, shut down when b ends.
func benchTracing(b *testing.B, s sdktrace.Sampler) *Tracing {
	b.Helper()
	if s == nil {
		return nil
	}
	tr, err := Setup(context.Background(), Options{Exporter: tracetest.NewNoopExporter(), Sampler: s})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr
}

// middlewares returns tr's middleware as httpapi.Config wants it.
func middlewares(tr *Tracing) []func(http.Handler) http.Handler {
	if mw := tr.Middleware(); mw != nil {
		return []func(http.Handler) http.Handler{mw}
	}
	return nil
}

// BenchmarkMiddleware measures a request through the whole API handler
// to a route that does no I/O, so that the middleware's share shows.
func BenchmarkMiddleware(b *testing.B) {
	c := dbtest.SQLite(b).Client(b, queue.Config{}, false)
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			tr := benchTracing(b, m.sampler)
			a := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Modules: []httpapi.Module{itemsModule{}}, Middleware: middlewares(tr)}))(b)
			req := httptest.NewRequest("GET", "/api/v1/tracetest/items/42", nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				a.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

// BenchmarkGetUser measures GET /api/v1/users/{id} on SQLite, as
// internal/users does, with tracing off and on.
func BenchmarkGetUser(b *testing.B) {
	d := dbtest.SQLite(b)
	svc := testutil.Must(users.NewService(d.DB, users.Options{}))(b)
	u, err := svc.Create(context.Background(), users.CreateInput{Email: "ada@example.com", Name: "Ada Lovelace"})
	if err != nil {
		b.Fatal(err)
	}
	c := d.Client(b, queue.Config{}, false)
	path := "/api/v1/users/" + strconv.FormatInt(u.ID, 10)
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			tr := benchTracing(b, m.sampler)
			a := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Modules: []httpapi.Module{users.NewHandler(svc)}, Middleware: middlewares(tr)}))(b)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest("GET", path, nil)
				for pb.Next() {
					w := httptest.NewRecorder()
					a.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Errorf("status %d", w.Code)
						return
					}
				}
			})
		})
	}
}

// BenchmarkWorkHook measures what the work hook adds to one attempt of a
// job whose metadata carries a trace context.
func BenchmarkWorkHook(b *testing.B) {
	md, _ := withTrace(nil, testSC)
	jobs := []struct {
		name string
		job  *queue.Job
	}{
		// Inserted by a traced request: the parent decides.
		{"child", &queue.Job{ID: 1, Kind: "noop", Queue: "default", Attempt: 1, MaxAttempts: 25, Metadata: json.RawMessage(md)}},
		// Inserted outside any trace (kiln bench, a cron, a Go caller
		// without a span): the ratio decides.
		{"root", &queue.Job{ID: 1, Kind: "noop", Queue: "default", Attempt: 1, MaxAttempts: 25}},
	}
	modes := append(benchModes[:len(benchModes):len(benchModes)],
		struct {
			name    string
			sampler sdktrace.Sampler
		}{"ratio10", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))})
	work := func(context.Context) error { return nil }
	for _, m := range modes {
		for _, j := range jobs {
			b.Run(m.name+"/"+j.name, func(b *testing.B) {
				hook := benchTracing(b, m.sampler).WorkHook()
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if hook == nil {
						err = work(ctx)
					} else {
						err = hook(ctx, j.job, work)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkInsertHook measures what the insert hook adds to one insert
// made inside a span.
func BenchmarkInsertHook(b *testing.B) {
	tr := benchTracing(b, sdktrace.AlwaysSample())
	ctx, span := tr.tracer.Start(context.Background(), "request")
	defer span.End()
	hook := tr.InsertHook()
	b.ReportAllocs()
	for b.Loop() {
		p := queue.InsertParams{Kind: "noop"}
		hook(ctx, &p)
		if len(p.Opts.Metadata) == 0 {
			b.Fatal("no metadata")
		}
	}
}

// BenchmarkEngineThroughput runs the engine's throughput benchmark (as
// kiln bench --mode throughput does, on SQLite) with tracing's hooks on
// every client, and reports jobs worked per second. Each job runs in a
// root span of its own, as jobs inserted outside any request do.
func BenchmarkEngineThroughput(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			tr := benchTracing(b, m.sampler)
			var rate float64
			runs := 0
			cpu0 := cpuTime()
			for b.Loop() {
				d := dbtest.SQLite(b)
				res, err := bench.RunThroughput(context.Background(), bench.Options{
					Driver: d.Driver, Jobs: engineJobs, Workers: 100,
					Configure: func(cfg *queue.Config) { cfg.InsertHook, cfg.WorkHook = tr.InsertHook(), tr.WorkHook() },
				})
				if err != nil {
					b.Fatal(err)
				}
				rate += res.WorkJobsPerS
				runs++
			}
			b.ReportMetric(rate/float64(runs), "jobs/s")
			// CPU time of the whole process per job (inserting, working
			// and exporting), steadier than the rate on a shared machine.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(runs*engineJobs), "cpu-µs/job")
		})
	}
}

// engineJobs is the number of jobs of one engine benchmark run.
const engineJobs = 20000

// cpuTime returns the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
