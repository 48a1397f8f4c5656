package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/jobkinds"
	"github.com/kilnhq/kiln/queue"
)

// quiet discards the logs of tests whose failures are on purpose.
var quiet = slog.New(slog.DiscardHandler)

// scrape GETs h with the Accept header and returns the response and body.
func scrape(h http.Handler, accept string) (*http.Response, string) {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result(), rec.Body.String()
}

// samples scrapes h in the text format and returns each sample's value by
// its series, as written: `name{label="value",...}`.
func samples(t testing.TB, h http.Handler) map[string]float64 {
	t.Helper()
	res, body := scrape(h, "")
	return parse(t, res.StatusCode, body)
}

// parse reads a scrape in the text format.
func parse(t testing.TB, status int, body string) map[string]float64 {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", status, body)
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("scrape: malformed line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// withPrefix returns the samples whose series starts with prefix.
func withPrefix(s map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range s {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// diff describes how got differs from want, or returns "".
func diff(got, want map[string]float64) string {
	var lines []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			lines = append(lines, fmt.Sprintf("missing %s (want %g)", k, w))
		} else if g != w {
			lines = append(lines, fmt.Sprintf("%s = %g, want %g", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, fmt.Sprintf("unexpected %s = %g", k, g))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func jobsTotal(q, kind, event string) string {
	return fmt.Sprintf(`kiln_jobs_total{event=%q,kind=%q,queue=%q}`, event, kind, q)
}

// jobCounters lists every event counter of queue q and kind, zero unless
// set in nonzero.
func jobCounters(into map[string]float64, q, kind string, nonzero map[queue.EventKind]float64) {
	for _, ev := range jobEvents {
		into[jobsTotal(q, kind, string(ev))] = nonzero[ev]
	}
}

// TestEngineEvents runs real jobs on the engine and checks what a scrape
// reports of them: exact counters, histogram counts and queue gauges.
func TestEngineEvents(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()

		w := queue.NewWorkers()
		jobkinds.Register(w)
		client := e.Client(t, queue.Config{
			Workers:      w,
			Queues:       map[string]queue.QueueConfig{queue.DefaultQueue: {MaxWorkers: 4}},
			PollInterval: 20 * time.Millisecond,
		}, true)

		// The age of the idle queue's job is measured on this clock.
		runAt := time.Now().Add(-time.Hour).Truncate(time.Second)
		m := New(Options{
			Version: "1.2.3",
			Now:     func() time.Time { return runAt.Add(90 * time.Second) },
		})
		m.WatchQueues(client)
		defer client.Subscribe(m.ObserveJobEvent)()
		h := m.Handler()

		fast := &queue.RetryPolicy{MaxAttempts: 3, Backoff: queue.BackoffFixed, BaseDelay: 10 * time.Millisecond, Jitter: -1}
		insert := func(kind, args string, opts queue.InsertOpts) int64 {
			t.Helper()
			res, err := client.Insert(ctx, queue.InsertParams{Kind: kind, Args: json.RawMessage(args), Opts: opts})
			if err != nil {
				t.Fatalf("insert %s %s: %v", kind, args, err)
			}
			return res.Job.ID
		}
		var ids []int64
		for range 3 {
			ids = append(ids, insert("noop", `{}`, queue.InsertOpts{}))
		}
		ids = append(ids,
			insert("fail", `{"times":1}`, queue.InsertOpts{Retry: fast}),
			insert("fail", `{"times":5,"permanent":true}`, queue.InsertOpts{Retry: fast}),
		)
		later := insert("sleep", `{"ms":1}`, queue.InsertOpts{RunIn: time.Hour})
		if _, err := client.Cancel(ctx, later); err != nil {
			t.Fatal(err)
		}
		insert("noop", `{}`, queue.InsertOpts{Queue: "idle", RunAt: runAt})
		if err := client.Pause(ctx, "stopped"); err != nil {
			t.Fatal(err)
		}

		want := map[string]float64{}
		jobCounters(want, "default", "noop", map[queue.EventKind]float64{
			queue.EventInserted: 3, queue.EventStarted: 3, queue.EventCompleted: 3,
		})
		jobCounters(want, "default", "fail", map[queue.EventKind]float64{
			queue.EventInserted: 2, queue.EventStarted: 3, queue.EventRetried: 1,
			queue.EventCompleted: 1, queue.EventFailed: 1,
		})
		jobCounters(want, "default", "sleep", map[queue.EventKind]float64{
			queue.EventInserted: 1, queue.EventCancelled: 1,
		})
		jobCounters(want, "idle", "noop", map[queue.EventKind]float64{queue.EventInserted: 1})

		// Events are emitted after the outcome is stored: wait for them.
		var got map[string]float64
		for deadline := time.Now().Add(30 * time.Second); ; {
			got = withPrefix(samples(t, h), "kiln_jobs_total")
			if diff(got, want) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job counters after 30s:\n%s", diff(got, want))
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, id := range ids {
			j, err := client.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !j.State.Final() {
				t.Errorf("job %d (%s) is %s after its events", id, j.Kind, j.State)
			}
		}

		s := samples(t, h)
		if d := diff(withPrefix(s, "kiln_job_run_duration_seconds_count"), map[string]float64{
			`kiln_job_run_duration_seconds_count{kind="noop",outcome="completed",queue="default"}`: 3,
			`kiln_job_run_duration_seconds_count{kind="fail",outcome="completed",queue="default"}`: 1,
			`kiln_job_run_duration_seconds_count{kind="fail",outcome="retried",queue="default"}`:   1,
			`kiln_job_run_duration_seconds_count{kind="fail",outcome="failed",queue="default"}`:    1,
			// Cancelled while scheduled: the series exists, with no run.
			`kiln_job_run_duration_seconds_count{kind="sleep",outcome="cancelled",queue="default"}`: 0,
		}); d != "" {
			t.Errorf("run time histograms:\n%s", d)
		}
		if d := diff(withPrefix(s, "kiln_job_wait_duration_seconds_count"), map[string]float64{
			`kiln_job_wait_duration_seconds_count{kind="noop",queue="default"}`: 3,
			`kiln_job_wait_duration_seconds_count{kind="fail",queue="default"}`: 3,
		}); d != "" {
			t.Errorf("wait histograms:\n%s", d)
		}
		// Every bucket line counts up to the total: the +Inf bucket
		// holds all observations.
		if v := s[`kiln_job_run_duration_seconds_bucket{kind="noop",outcome="completed",queue="default",le="+Inf"}`]; v != 3 {
			t.Errorf("noop run time +Inf bucket = %g, want 3", v)
		}

		wantQueues := map[string]float64{}
		for _, st := range queue.AllStates {
			for _, q := range []string{"default", "idle", "stopped"} {
				wantQueues[fmt.Sprintf(`kiln_queue_jobs{queue=%q,state=%q}`, q, st)] = 0
			}
		}
		wantQueues[`kiln_queue_jobs{queue="default",state="completed"}`] = 4
		wantQueues[`kiln_queue_jobs{queue="default",state="failed"}`] = 1
		wantQueues[`kiln_queue_jobs{queue="default",state="cancelled"}`] = 1
		wantQueues[`kiln_queue_jobs{queue="idle",state="available"}`] = 1
		if d := diff(withPrefix(s, "kiln_queue_jobs"), wantQueues); d != "" {
			t.Errorf("queue depth:\n%s", d)
		}
		if d := diff(withPrefix(s, "kiln_queue_oldest_available_age_seconds"), map[string]float64{
			`kiln_queue_oldest_available_age_seconds{queue="default"}`: 0,
			`kiln_queue_oldest_available_age_seconds{queue="idle"}`:    90,
			`kiln_queue_oldest_available_age_seconds{queue="stopped"}`: 0,
		}); d != "" {
			t.Errorf("oldest available age:\n%s", d)
		}
		if d := diff(withPrefix(s, "kiln_queue_paused"), map[string]float64{
			`kiln_queue_paused{queue="default"}`: 0,
			`kiln_queue_paused{queue="idle"}`:    0,
			`kiln_queue_paused{queue="stopped"}`: 1,
		}); d != "" {
			t.Errorf("paused:\n%s", d)
		}
		if v := s["kiln_queue_scrape_errors_total"]; v != 0 {
			t.Errorf("kiln_queue_scrape_errors_total = %g, want 0", v)
		}
		if _, ok := s["kiln_queue_stats_duration_seconds"]; !ok {
			t.Error("kiln_queue_stats_duration_seconds is missing")
		}
		key := fmt.Sprintf(`kiln_build_info{goversion=%q,revision=`, runtime.Version())
		found := false
		for k, v := range s {
			if strings.HasPrefix(k, key) && strings.HasSuffix(k, `,version="1.2.3"}`) && v == 1 {
				found = true
			}
		}
		if !found {
			t.Errorf("no kiln_build_info{goversion=%q,...,version=\"1.2.3\"} 1 in %v", runtime.Version(), withPrefix(s, "kiln_build_info"))
		}

		problems, err := testutil.GatherAndLint(m.Registry())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	})
}

// TestObserveJobEvent checks each event kind, including those the engine
// test cannot easily cause.
func TestObserveJobEvent(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	job := &queue.Job{Queue: "q", Kind: "k"}
	ev := func(kind queue.EventKind, run, wait time.Duration) {
		m.ObserveJobEvent(queue.Event{Kind: kind, Job: job, RunTime: run, Wait: wait})
	}
	ev(queue.EventStarted, 0, 3*time.Second)
	ev(queue.EventRescued, 0, 0)
	ev(queue.EventSnoozed, time.Second, 0)
	ev(queue.EventHandedBack, 2*time.Second, 0)
	ev(queue.EventCancelled, 0, 0)                             // cancelled while waiting
	ev(queue.EventCancelled, 4*time.Second, 0)                 // cancelled while running
	ev(queue.EventCompleted, 0, 0)                             // an attempt that took no measurable time
	m.ObserveJobEvent(queue.Event{Kind: queue.EventCompleted}) // no job: ignored

	s := samples(t, m.Handler())
	want := map[string]float64{}
	jobCounters(want, "q", "k", map[queue.EventKind]float64{
		queue.EventStarted: 1, queue.EventRescued: 1, queue.EventSnoozed: 1,
		queue.EventHandedBack: 1, queue.EventCancelled: 2, queue.EventCompleted: 1,
	})
	if d := diff(withPrefix(s, "kiln_jobs_total"), want); d != "" {
		t.Errorf("counters:\n%s", d)
	}
	if d := diff(withPrefix(s, "kiln_job_run_duration_seconds_sum"), map[string]float64{
		`kiln_job_run_duration_seconds_sum{kind="k",outcome="snoozed",queue="q"}`:     1,
		`kiln_job_run_duration_seconds_sum{kind="k",outcome="handed_back",queue="q"}`: 2,
		`kiln_job_run_duration_seconds_sum{kind="k",outcome="cancelled",queue="q"}`:   4,
		`kiln_job_run_duration_seconds_sum{kind="k",outcome="completed",queue="q"}`:   0,
	}); d != "" {
		t.Errorf("run time sums:\n%s", d)
	}
	if d := diff(withPrefix(s, "kiln_job_wait_duration_seconds_sum"), map[string]float64{
		`kiln_job_wait_duration_seconds_sum{kind="k",queue="q"}`: 3,
	}); d != "" {
		t.Errorf("wait sums:\n%s", d)
	}
}

// TestRequests checks the HTTP metrics as an access-log middleware in
// front of a ServeMux would record them.
func TestRequests(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "404" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "{}")
	})
	var inFlight atomic.Value
	mux.HandleFunc("POST /api/v1/users", func(w http.ResponseWriter, r *http.Request) {
		inFlight.Store(samples(t, m.Handler())["kiln_http_requests_in_flight"])
		w.WriteHeader(http.StatusCreated)
	})
	srv := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.RequestStarted()
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		// The mux sets r.Pattern on the request it is given.
		m.RequestDone(r.Method, r.Pattern, rec.status, time.Since(start))
	})
	do := func(method, target string) {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	}
	do("GET", "/api/v1/users/12345")
	do("GET", "/api/v1/users/67890")
	do("GET", "/api/v1/users/404")
	do("POST", "/api/v1/users")
	do("GET", "/api/v1/nowhere/42")
	do("BREW", "/api/v1/users/1")

	if v, _ := inFlight.Load().(float64); v != 1 {
		t.Errorf("requests in flight during a request = %g, want 1", v)
	}
	s := samples(t, m.Handler())
	if v := s["kiln_http_requests_in_flight"]; v != 0 {
		t.Errorf("requests in flight after all = %g, want 0", v)
	}
	got := withPrefix(s, "kiln_http_request_duration_seconds_count")
	if d := diff(got, map[string]float64{
		`kiln_http_request_duration_seconds_count{method="GET",route="/api/v1/users/{id}",status="200"}`: 2,
		`kiln_http_request_duration_seconds_count{method="GET",route="/api/v1/users/{id}",status="404"}`: 1,
		`kiln_http_request_duration_seconds_count{method="POST",route="/api/v1/users",status="201"}`:     1,
		`kiln_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"}`:          1,
		`kiln_http_request_duration_seconds_count{method="other",route="unmatched",status="405"}`:        1,
	}); d != "" {
		t.Errorf("request histograms:\n%s", d)
	}
	routes := map[string]bool{}
	for k := range withPrefix(s, "kiln_http_request_duration_seconds") {
		_, after, ok := strings.Cut(k, `route="`)
		if !ok {
			t.Fatalf("series %s has no route", k)
		}
		route, _, _ := strings.Cut(after, `"`)
		routes[route] = true
		for _, raw := range []string{"12345", "67890", "/404", "/42", "nowhere", "BREW"} {
			if strings.Contains(k, raw) {
				t.Errorf("series %s holds the raw request's %q", k, raw)
			}
		}
	}
	if len(routes) != 3 || !routes["/api/v1/users/{id}"] || !routes["/api/v1/users"] || !routes[Unmatched] {
		t.Errorf("route labels %v, want the two patterns and %q", routes, Unmatched)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func TestRouteLabel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"GET /api/v1/users/{id}":       "/api/v1/users/{id}",
		"/api/v1/jobs":                 "/api/v1/jobs",
		"DELETE  /api/v1/jobs/{id}":    "/api/v1/jobs/{id}",
		"GET example.com/api/v1/items": "/api/v1/items",
		"example.com/":                 "/",
		"":                             Unmatched,
		"unmatched":                    Unmatched,
	} {
		if got := routeLabel(in); got != want {
			t.Errorf("routeLabel(%q) = %q, want %q", in, got, want)
		}
	}
	if got := methodLabel("get"); got != "other" {
		t.Errorf(`methodLabel("get") = %q, want "other"`, got)
	}
}

func TestOpenMetrics(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	m.RequestStarted()
	m.RequestDone("GET", "GET /api/v1/users/{id}", 200, time.Millisecond)
	res, body := scrape(m.Handler(), "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("Content-Type = %q, want application/openmetrics-text", ct)
	}
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("OpenMetrics body does not end with # EOF:\n...%s", body[max(0, len(body)-200):])
	}
	if !strings.Contains(body, `kiln_http_request_duration_seconds_bucket{method="GET",route="/api/v1/users/{id}",status="200",le="0.001"} 1`) {
		t.Error("OpenMetrics body lacks the request's bucket")
	}

	res, body = scrape(m.Handler(), "")
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type without Accept = %q, want text/plain", ct)
	}
	if strings.Contains(body, "# EOF") {
		t.Error("the text format holds # EOF")
	}
}

// TestRuntimeMetrics checks that the scheduler latency and GC pause
// histograms, process and handler metrics are exposed, and that the
// whole registry passes the Prometheus linter.
func TestRuntimeMetrics(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	m.WatchQueues(staticQueues{})
	runtime.GC()
	s := samples(t, m.Handler())
	for _, name := range []string{
		`go_sched_latencies_seconds_count`,
		`go_sched_pauses_total_gc_seconds_count`,
		`go_gc_duration_seconds_count`,
		`go_goroutines`,
		`go_gc_cycles_total_gc_cycles_total`,
		`process_cpu_seconds_total`,
		`process_resident_memory_bytes`,
		`kiln_http_requests_in_flight`,
		`kiln_queue_scrape_errors_total`,
	} {
		if _, ok := s[name]; !ok {
			t.Errorf("%s is missing", name)
		}
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

type staticQueues struct{}

func (staticQueues) Queues(context.Context) ([]queue.QueueStats, error) {
	return []queue.QueueStats{{Name: "default", Counts: map[queue.JobState]int64{queue.StateAvailable: 2}}}, nil
}

// blockingQueues answers only when released, ignoring its context, as a
// database call stuck in the network might.
type blockingQueues struct {
	release chan struct{}
	calls   atomic.Int32
}

func (b *blockingQueues) Queues(context.Context) ([]queue.QueueStats, error) {
	b.calls.Add(1)
	<-b.release
	return []queue.QueueStats{{Name: "default", Counts: map[queue.JobState]int64{queue.StateAvailable: 7}}}, nil
}

func TestScrapeTimeout(t *testing.T) {
	t.Parallel()
	b := &blockingQueues{release: make(chan struct{})}
	m := New(Options{ScrapeTimeout: 100 * time.Millisecond, Logger: quiet})
	m.WatchQueues(b)

	start := time.Now()
	var wg sync.WaitGroup
	codes, bodies := make([]int, 3), make([]string, 3)
	for i := range codes {
		wg.Go(func() {
			res, body := scrape(m.Handler(), "")
			codes[i], bodies[i] = res.StatusCode, body
		})
	}
	wg.Wait()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("concurrent scrapes of a stuck query took %s", took)
	}
	for i := range codes {
		s := parse(t, codes[i], bodies[i])
		if v := s["kiln_queue_scrape_errors_total"]; v < 1 {
			t.Errorf("scrape %d: kiln_queue_scrape_errors_total = %g, want at least 1", i, v)
		}
		if len(withPrefix(s, "kiln_queue_jobs")) != 0 {
			t.Errorf("scrape %d reports queue depth without an answer", i)
		}
		if _, ok := s["go_goroutines"]; !ok {
			t.Errorf("scrape %d lost the other metrics", i)
		}
	}
	// A scrape while the query is still stuck fails at once, without a
	// second query.
	start = time.Now()
	s := samples(t, m.Handler())
	if took := time.Since(start); took > time.Second {
		t.Errorf("a scrape during a stuck query took %s", took)
	}
	if v := s["kiln_queue_scrape_errors_total"]; v != 4 {
		t.Errorf("kiln_queue_scrape_errors_total = %g, want 4", v)
	}
	if n := b.calls.Load(); n != 1 {
		t.Errorf("Queues called %d times while stuck, want 1", n)
	}

	// Once it answers, the next scrape asks again and reports depth.
	close(b.release)
	for deadline := time.Now().Add(10 * time.Second); ; {
		s = samples(t, m.Handler())
		if s[`kiln_queue_jobs{queue="default",state="available"}`] == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue depth never reported after the query was released: %v", withPrefix(s, "kiln_queue"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type failingQueues struct{}

func (failingQueues) Queues(context.Context) ([]queue.QueueStats, error) {
	return nil, errors.New("database is locked")
}

func TestScrapeError(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	m := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	m.WatchQueues(failingQueues{})
	for want := 1.0; want <= 2; want++ {
		res, body := scrape(m.Handler(), "")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", res.StatusCode, body)
		}
		s := samples(t, m.Handler())
		if v := s["kiln_queue_scrape_errors_total"]; v != 2*want {
			t.Errorf("kiln_queue_scrape_errors_total = %g, want %g", v, 2*want)
		}
		if _, ok := s["kiln_queue_paused"]; ok {
			t.Error("paused reported without an answer")
		}
	}
	if !strings.Contains(logs.String(), "database is locked") {
		t.Errorf("the failure was not logged: %q", logs.String())
	}
}

// TestCacheCap checks that label sets beyond the cache's cap are still
// recorded.
func TestCacheCap(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	const limit = 50
	m.jobCache.limit = limit
	for i := range limit + 10 {
		m.ObserveJobEvent(queue.Event{Kind: queue.EventInserted, Job: &queue.Job{Queue: "q", Kind: "k" + strconv.Itoa(i)}})
	}
	m.ObserveJobEvent(queue.Event{Kind: queue.EventInserted, Job: &queue.Job{Queue: "q", Kind: "k" + strconv.Itoa(limit+5)}})
	if n := len(*m.jobCache.m.Load()); n != limit {
		t.Errorf("cache holds %d label sets, want %d", n, limit)
	}
	if v := testutil.ToFloat64(m.jobs.WithLabelValues("q", "k"+strconv.Itoa(limit+5), "inserted")); v != 2 {
		t.Errorf("uncached series = %g, want 2", v)
	}
}

func TestInvalidUTF8Labels(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	m.RequestStarted()
	m.RequestDone("GET", "GET /a/\xff", 200, time.Millisecond)
	m.ObserveJobEvent(queue.Event{Kind: queue.EventInserted, Job: &queue.Job{Queue: "\xfe", Kind: "k"}})
	if res, body := scrape(m.Handler(), ""); res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
}
