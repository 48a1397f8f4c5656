package idempotency

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/pgdriver"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// newClock returns a settable clock for expiry tests.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// probe is a module of POST routes that count their calls.
type probe struct {
	db      *database.DB // for /probe/work
	calls   atomic.Int64
	entered chan int64    // receives the call number of a blocked call
	release chan struct{} // unblocks the first call of /probe/block
}

func newProbe() *probe {
	return &probe{entered: make(chan int64, 16), release: make(chan struct{})}
}

func (p *probe) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Pattern: "POST /api/v1/probe/status/{code}", Handler: p.status},
		{Pattern: "POST /api/v1/probe/panic", Handler: p.panic},
		{Pattern: "POST /api/v1/probe/big", Handler: p.big},
		{Pattern: "POST /api/v1/probe/flush", Handler: p.flush},
		{Pattern: "POST /api/v1/probe/block", Handler: p.block},
		{Pattern: "POST /api/v1/probe/work", Handler: p.work},
		{Pattern: "POST /api/v1/probe/upload", Handler: p.upload, BodyLimit: 1 << 30},
	}
}

func (p *probe) OpenAPI() []byte { return []byte(`{"paths":{}}`) }

// status answers with the status in the path, naming the call and echoing
// the body.
func (p *probe) status(w http.ResponseWriter, r *http.Request) {
	n := p.calls.Add(1)
	code, err := strconv.Atoi(r.PathValue("code"))
	if err != nil || code < 200 || code > 599 {
		httpapi.WriteError(w, r, httpapi.ParamError("code", "must be an HTTP status"))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.Header().Set("X-Probe", fmt.Sprintf("call %d", n))
	w.Header().Set("Location", fmt.Sprintf("/api/v1/probe/%d", n))
	if code == http.StatusNoContent {
		w.WriteHeader(code)
		return
	}
	httpapi.WriteJSON(w, r, code, map[string]any{"call": n, "body": string(body)})
}

func (p *probe) panic(http.ResponseWriter, *http.Request) {
	p.calls.Add(1)
	panic("probe panics")
}

// big writes 100 KiB in pieces.
func (p *probe) big(w http.ResponseWriter, _ *http.Request) {
	p.calls.Add(1)
	w.Header().Set("Content-Type", "text/plain")
	chunk := strings.Repeat("x", 1024)
	for range 100 {
		_, _ = io.WriteString(w, chunk)
	}
}

func (p *probe) flush(w http.ResponseWriter, _ *http.Request) {
	p.calls.Add(1)
	_, _ = io.WriteString(w, "partial ")
	_ = http.NewResponseController(w).Flush()
	_, _ = io.WriteString(w, "rest")
}

// block blocks its first call until release is closed.
func (p *probe) block(w http.ResponseWriter, r *http.Request) {
	n := p.calls.Add(1)
	if n == 1 {
		p.entered <- n
		<-p.release
	}
	httpapi.WriteJSON(w, r, http.StatusCreated, map[string]any{"call": n})
}

// tokens authenticates "a" and "b" as two callers with every scope.
type tokens struct{}

func (tokens) Authenticate(_ context.Context, token string) (httpapi.Principal, error) {
	switch token {
	case "a", "b":
		return httpapi.Principal{TokenID: "id-" + token, Name: token, Scope: httpapi.ScopeAdmin}, nil
	}
	return httpapi.Principal{}, httpapi.ErrUnauthenticated
}

// instance is one API process: its engine client, store and server.
type instance struct {
	t     *testing.T
	env   *dbtest.Env
	jobs  *queue.Client
	store *Store
	probe *probe
	srv   *testutil.Server
}

type setup struct {
	opts      Options
	auth      httpapi.Authenticator
	bodyLimit int64
}

func newInstance(t *testing.T, e *dbtest.Env, s setup) *instance {
	t.Helper()
	w := queue.NewWorkers()
	w.HandleFunc("noop", func(context.Context, *queue.Job) error { return nil })
	in := &instance{t: t, env: e, jobs: e.Client(t, queue.Config{Workers: w}, false), store: NewStore(e.DB, s.opts), probe: newProbe()}
	in.probe.db = e.DB
	in.srv = testutil.Serve(t, testutil.Must(httpapi.New(httpapi.Config{
		Jobs: in.jobs, DB: e.DB, Auth: s.auth, BodyLimit: s.bodyLimit,
		Idempotency: in.store, Modules: []httpapi.Module{in.probe},
	}))(t))
	return in
}

// reopen opens the database of e again, as a second process would.
func reopen(t *testing.T, e *dbtest.Env) *dbtest.Env {
	t.Helper()
	if e.DB.Dialect == database.SQLite {
		d, err := sqlitedriver.Open(e.URL, sqlitedriver.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return &dbtest.Env{DB: database.New(d.DB(), d.ReadDB(), database.SQLite), Driver: d, URL: e.URL}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := pgdriver.Open(ctx, e.URL, pgdriver.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return &dbtest.Env{DB: database.New(d.DB(), d.DB(), database.Postgres), Driver: d, URL: e.URL}
}

// response is an answer, with what these tests read of it.
type response struct{ testutil.Response }

func (r response) replayed() bool { return r.Header.Get(ReplayedHeader) == "true" }

// call returns the "call" number of a probe response.
func (r response) call(t *testing.T) int64 {
	t.Helper()
	var v struct{ Call int64 }
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("status %d, body %q: %v", r.Status, r.Body, err)
	}
	return v.Call
}

// problem checks that r is a problem with status and code and returns the
// fields it names.
func (r response) problem(t *testing.T, status int, code httpapi.Code) []string {
	t.Helper()
	p := testutil.ProblemOf(t, r.Response, status)
	if p.Code != string(code) {
		t.Fatalf("problem code %q, want %q: %s", p.Code, code, r.Body)
	}
	return p.Fields()
}

// post sends a POST; header is name, value pairs (a name given twice is
// sent twice).
func (in *instance) post(path, body string, header ...string) response {
	in.t.Helper()
	return in.send(path, strings.NewReader(body), header...)
}

func (in *instance) send(path string, body io.Reader, header ...string) response {
	in.t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, body)
	req.RequestURI = ""
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return response{in.srv.Send(req)}
}

func (in *instance) countJobs() int {
	in.t.Helper()
	jobs, err := in.jobs.List(context.Background(), queue.ListParams{Limit: 1000})
	if err != nil {
		in.t.Fatal(err)
	}
	return len(jobs)
}

func (in *instance) countKeys() int {
	in.t.Helper()
	var n int
	if err := in.env.DB.R.QueryRow("SELECT count(*) FROM idempotency_keys").Scan(&n); err != nil {
		in.t.Fatal(err)
	}
	return n
}

func key(k string) []string { return []string{Header, k} }

func TestJobsReplay(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		in := newInstance(t, e, setup{})
		first := in.post("/api/v1/jobs", `{"kind":"noop"}`, key(`"job-1"`)...)
		if first.Status != http.StatusCreated || first.replayed() {
			t.Fatalf("first: status %d, replayed %v: %s", first.Status, first.replayed(), first.Body)
		}
		loc := first.Header.Get("Location")
		if loc == "" {
			t.Fatal("first: no Location")
		}
		again := in.post("/api/v1/jobs", `{"kind":"noop"}`, key(`"job-1"`)...)
		if again.Status != http.StatusCreated || !again.replayed() || string(again.Body) != string(first.Body) {
			t.Fatalf("repeat: status %d, replayed %v, body %s; want the first %s", again.Status, again.replayed(), again.Body, first.Body)
		}
		if again.Header.Get("Location") != loc || again.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("repeat headers %v; want Location %s and JSON", again.Header, loc)
		}
		if id := again.Header.Get(httpapi.RequestIDHeader); id == "" || id == first.Header.Get(httpapi.RequestIDHeader) {
			t.Fatalf("repeat request id %q: want a new one", id)
		}
		// The bare form of the same key is the same key.
		if bare := in.post("/api/v1/jobs", `{"kind":"noop"}`, key(`job-1`)...); !bare.replayed() {
			t.Fatalf("bare key: status %d, not replayed", bare.Status)
		}
		if n := in.countJobs(); n != 1 {
			t.Fatalf("%d jobs after a replay, want 1", n)
		}

		// The key with another body, or on another route, is refused.
		other := in.post("/api/v1/jobs", `{"kind":"noop","priority":1}`, key(`"job-1"`)...)
		if f := other.problem(t, http.StatusUnprocessableEntity, httpapi.CodeUnprocessable); len(f) != 1 || f[0] != Header {
			t.Fatalf("different body: fields %v", f)
		}
		elsewhere := in.post("/api/v1/queues/default/pause", "", key(`"job-1"`)...)
		elsewhere.problem(t, http.StatusUnprocessableEntity, httpapi.CodeUnprocessable)
		if n := in.countJobs(); n != 1 {
			t.Fatalf("%d jobs, want 1", n)
		}

		// Client errors are stored and replayed.
		bad := in.post("/api/v1/jobs", `{"kind":`, key(`"job-2"`)...)
		bad.problem(t, http.StatusBadRequest, httpapi.CodeInvalid)
		badAgain := in.post("/api/v1/jobs", `{"kind":`, key(`"job-2"`)...)
		if badAgain.Status != http.StatusBadRequest || !badAgain.replayed() || string(badAgain.Body) != string(bad.Body) {
			t.Fatalf("repeat of a 400: status %d, replayed %v, body %s", badAgain.Status, badAgain.replayed(), badAgain.Body)
		}

		// Without a key nothing is deduplicated.
		in.post("/api/v1/jobs", `{"kind":"noop"}`)
		in.post("/api/v1/jobs", `{"kind":"noop"}`)
		if n := in.countJobs(); n != 3 {
			t.Fatalf("%d jobs, want 3", n)
		}
		if n := in.countKeys(); n != 2 {
			t.Fatalf("%d stored keys, want 2", n)
		}
	})
}

func TestReplayAcrossInstances(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		a := newInstance(t, e, setup{})
		b := newInstance(t, reopen(t, e), setup{})
		first := a.post("/api/v1/jobs", `{"kind":"noop","args":{"n":1}}`, key(`"shared"`)...)
		if first.Status != http.StatusCreated {
			t.Fatalf("A: status %d: %s", first.Status, first.Body)
		}
		again := b.post("/api/v1/jobs", `{"kind":"noop","args":{"n":1}}`, key(`"shared"`)...)
		if again.Status != http.StatusCreated || !again.replayed() || string(again.Body) != string(first.Body) {
			t.Fatalf("B: status %d, replayed %v, body %s", again.Status, again.replayed(), again.Body)
		}
		if n := b.countJobs(); n != 1 {
			t.Fatalf("%d jobs, want 1", n)
		}

		p := a.post("/api/v1/probe/status/201", `{}`, key(`"probe"`)...)
		q := b.post("/api/v1/probe/status/201", `{}`, key(`"probe"`)...)
		if p.call(t) != 1 || !q.replayed() || q.call(t) != 1 || q.Header.Get("X-Probe") != "call 1" {
			t.Fatalf("B answered %d %s (%v), want A's replay", q.Status, q.Body, q.Header)
		}
		if a.probe.calls.Load() != 1 || b.probe.calls.Load() != 0 {
			t.Fatalf("handler calls A %d, B %d; want 1, 0", a.probe.calls.Load(), b.probe.calls.Load())
		}
	})
}

func TestConcurrentRequestsWithOneKey(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		in := newInstance(t, e, setup{})
		t.Cleanup(func() {
			select {
			case <-in.probe.release:
			default:
				close(in.probe.release)
			}
		})
		const n = 8
		responses := make(chan response, n)
		start := make(chan struct{})
		for range n {
			go func() {
				<-start
				responses <- in.post("/api/v1/probe/block", `{"same":true}`, key(`"together"`)...)
			}()
		}
		close(start)
		deadline := time.After(30 * time.Second)
		for range n - 1 {
			select {
			case r := <-responses:
				r.problem(t, http.StatusConflict, httpapi.CodeConflict)
				if ra := r.Header.Get("Retry-After"); ra != "1" {
					t.Fatalf("Retry-After %q, want 1", ra)
				}
			case <-deadline:
				t.Fatal("no answer to the concurrent requests")
			}
		}
		select {
		case <-in.probe.entered:
		case <-deadline:
			t.Fatal("no request reached the handler")
		}
		// While it runs, the key with another body is refused outright.
		in.post("/api/v1/probe/block", `{"same":false}`, key(`"together"`)...).problem(t, http.StatusUnprocessableEntity, httpapi.CodeUnprocessable)
		close(in.probe.release)
		var first response
		select {
		case first = <-responses:
		case <-deadline:
			t.Fatal("the running request did not finish")
		}
		if first.Status != http.StatusCreated || first.call(t) != 1 {
			t.Fatalf("running request: %d %s", first.Status, first.Body)
		}
		again := in.post("/api/v1/probe/block", `{"same":true}`, key(`"together"`)...)
		if !again.replayed() || again.call(t) != 1 {
			t.Fatalf("repeat: %d %s, replayed %v", again.Status, again.Body, again.replayed())
		}
		if c := in.probe.calls.Load(); c != 1 {
			t.Fatalf("handler ran %d times, want 1", c)
		}
	})
}

func TestStoredAndReleasedResponses(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		in := newInstance(t, e, setup{opts: Options{MaxBody: 4096}})
		calls := func() int64 { return in.probe.calls.Load() }

		// 4xx, 2xx without a body, and 3xx are stored.
		for _, code := range []int{404, 409, 204, 303} {
			k := key(fmt.Sprintf("stored-%d", code))
			r1 := in.post(fmt.Sprintf("/api/v1/probe/status/%d", code), "x", k...)
			before := calls()
			r2 := in.post(fmt.Sprintf("/api/v1/probe/status/%d", code), "x", k...)
			if r1.Status != code || r2.Status != code || !r2.replayed() || string(r2.Body) != string(r1.Body) || calls() != before {
				t.Fatalf("%d: first %d %q, repeat %d %q replayed %v; handler calls %d → %d", code, r1.Status, r1.Body, r2.Status, r2.Body, r2.replayed(), before, calls())
			}
			if r2.Header.Get("X-Probe") != r1.Header.Get("X-Probe") || r2.Header.Get("Location") != r1.Header.Get("Location") {
				t.Fatalf("%d: headers %v, want those of %v", code, r2.Header, r1.Header)
			}
		}

		// A 5xx releases the key: the retry runs the handler.
		for _, code := range []int{500, 503} {
			k := key(fmt.Sprintf("failed-%d", code))
			r1 := in.post(fmt.Sprintf("/api/v1/probe/status/%d", code), "x", k...)
			r2 := in.post(fmt.Sprintf("/api/v1/probe/status/%d", code), "x", k...)
			if r1.Status != code || r2.Status != code || r2.replayed() || r2.call(t) != r1.call(t)+1 {
				t.Fatalf("%d: first %d %s, retry %d %s replayed %v", code, r1.Status, r1.Body, r2.Status, r2.Body, r2.replayed())
			}
		}

		// So does a panic, answered 500 by the recovery middleware.
		before := calls()
		for range 2 {
			in.post("/api/v1/probe/panic", "", key("panics")...).problem(t, http.StatusInternalServerError, httpapi.CodeInternal)
		}
		if calls() != before+2 {
			t.Fatalf("after a panic the retry did not run: calls %d → %d", before, calls())
		}

		// A response over MaxBody, or one flushed, is sent whole but not
		// stored.
		for _, route := range []string{"big", "flush"} {
			before := calls()
			r1 := in.post("/api/v1/probe/"+route, "", key(route)...)
			r2 := in.post("/api/v1/probe/"+route, "", key(route)...)
			if r1.Status != 200 || r2.Status != 200 || r2.replayed() || calls() != before+2 {
				t.Fatalf("%s: statuses %d, %d, replayed %v, calls %d → %d", route, r1.Status, r2.Status, r2.replayed(), before, calls())
			}
			if route == "big" && len(r1.Body) != 100*1024 {
				t.Fatalf("big: got %d bytes", len(r1.Body))
			}
			if route == "flush" && string(r1.Body) != "partial rest" {
				t.Fatalf("flush: got %q", r1.Body)
			}
		}
		if n := in.countKeys(); n != 4 {
			t.Fatalf("%d stored keys, want the 4 stored responses", n)
		}
	})
}

func TestKeysArePerCaller(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		in := newInstance(t, e, setup{auth: tokens{}})
		a := in.post("/api/v1/probe/status/201", "{}", "Authorization", "Bearer a", Header, "k")
		b := in.post("/api/v1/probe/status/201", "{}", "Authorization", "Bearer b", Header, "k")
		a2 := in.post("/api/v1/probe/status/201", "{}", "Authorization", "Bearer a", Header, "k")
		if a.call(t) != 1 || b.call(t) != 2 || b.replayed() || !a2.replayed() || a2.call(t) != 1 {
			t.Fatalf("a %s, b %s (replayed %v), a again %s (replayed %v)", a.Body, b.Body, b.replayed(), a2.Body, a2.replayed())
		}
		// Authentication runs first: no token, no key lookup.
		in.post("/api/v1/probe/status/201", "{}", Header, "k").problem(t, http.StatusUnauthorized, httpapi.CodeUnauthorized)
	})
}

func TestExpiryAndPrune(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		clk := newClock()
		in := newInstance(t, e, setup{opts: Options{Now: clk.Now, TTL: time.Hour, PruneBatch: 2}})
		in.post("/api/v1/probe/status/201", "a", key("x")...)
		clk.Advance(time.Hour - time.Second)
		if r := in.post("/api/v1/probe/status/201", "a", key("x")...); !r.replayed() || r.call(t) != 1 {
			t.Fatalf("before expiry: %s, replayed %v", r.Body, r.replayed())
		}
		clk.Advance(time.Second)
		// Expired: the key is free again, even for another request.
		if r := in.post("/api/v1/probe/status/201", "b", key("x")...); r.replayed() || r.call(t) != 2 {
			t.Fatalf("after expiry: %d %s, replayed %v", r.Status, r.Body, r.replayed())
		}
		if r := in.post("/api/v1/probe/status/201", "b", key("x")...); !r.replayed() || r.call(t) != 2 {
			t.Fatalf("the new response is not replayed: %s", r.Body)
		}

		for i := range 5 {
			in.post("/api/v1/probe/status/200", "", key(fmt.Sprintf("old-%d", i))...)
		}
		clk.Advance(time.Hour)
		in.post("/api/v1/probe/status/200", "", key("fresh")...)
		n, err := in.store.Prune(context.Background())
		if err != nil || n != 6 {
			t.Fatalf("Prune = %d, %v; want the 6 expired keys", n, err)
		}
		if c := in.countKeys(); c != 1 {
			t.Fatalf("%d keys left, want 1", c)
		}
		if n, err := in.store.Prune(context.Background()); err != nil || n != 0 {
			t.Fatalf("second Prune = %d, %v", n, err)
		}
	})
}

func TestRunPrunes(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		clk := newClock()
		in := newInstance(t, e, setup{opts: Options{Now: clk.Now, TTL: time.Minute, PruneInterval: 10 * time.Millisecond}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			in.store.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })
		for i := range 3 {
			in.post("/api/v1/probe/status/200", "", key(fmt.Sprintf("k%d", i))...)
		}
		clk.Advance(time.Minute)
		deadline := time.Now().Add(20 * time.Second)
		for in.countKeys() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d keys left", in.countKeys())
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	})
}

func TestExpiredLockIsTakenOver(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		clk := newClock()
		in := newInstance(t, e, setup{opts: Options{Now: clk.Now, LockTimeout: time.Minute}})
		first := make(chan response, 1)
		go func() { first <- in.post("/api/v1/probe/block", "{}", key("slow")...) }()
		select {
		case <-in.probe.entered:
		case <-time.After(30 * time.Second):
			close(in.probe.release)
			t.Fatal("the first request did not reach the handler")
		}
		in.post("/api/v1/probe/block", "{}", key("slow")...).problem(t, http.StatusConflict, httpapi.CodeConflict)
		// Another request cannot take over an abandoned key either.
		clk.Advance(time.Minute)
		in.post("/api/v1/probe/block", `{"other":1}`, key("slow")...).problem(t, http.StatusUnprocessableEntity, httpapi.CodeUnprocessable)
		// The lock ran out, as if the first process died: the repeat runs.
		second := in.post("/api/v1/probe/block", "{}", key("slow")...)
		if second.Status != http.StatusCreated || second.replayed() || second.call(t) != 2 {
			t.Fatalf("takeover: %d %s, replayed %v", second.Status, second.Body, second.replayed())
		}
		// The first request finishes late: it is answered, but cannot
		// overwrite its successor's record.
		close(in.probe.release)
		if r := <-first; r.Status != http.StatusCreated || r.call(t) != 1 {
			t.Fatalf("first: %d %s", r.Status, r.Body)
		}
		if r := in.post("/api/v1/probe/block", "{}", key("slow")...); !r.replayed() || r.call(t) != 2 {
			t.Fatalf("replay after takeover: %s, replayed %v", r.Body, r.replayed())
		}
	})
}

func TestBadHeaderAndBody(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		in := newInstance(t, e, setup{bodyLimit: 64})
		for _, h := range [][]string{
			{Header, `""`},
			{Header, `"open`},
			{Header, strings.Repeat("k", 256)},
			{Header, `"a", "b"`},
			{Header, `"a";x=1`},
			{Header, "a", Header, "b"},
		} {
			r := in.post("/api/v1/probe/status/201", "{}", h...)
			if f := r.problem(t, http.StatusBadRequest, httpapi.CodeInvalid); len(f) != 1 || f[0] != Header {
				t.Fatalf("%q: fields %v, want %s", h, f, Header)
			}
		}
		// A body over the API's limit, sent without a length, is a 413.
		big := io.MultiReader(strings.NewReader(strings.Repeat(" ", 100)), strings.NewReader("{}"))
		in.send("/api/v1/probe/status/201", big, key("large")...).problem(t, http.StatusRequestEntityTooLarge, httpapi.CodeTooLarge)
		if c := in.probe.calls.Load(); c != 0 {
			t.Fatalf("the handler ran %d times", c)
		}
		if n := in.countKeys(); n != 0 {
			t.Fatalf("%d keys stored", n)
		}
	})
}

// FuzzMiddleware sends any Idempotency-Key value through the API: the
// answer is the handler's 201 (first or replayed) or a 400, never a 5xx
// and never a panic.
func FuzzMiddleware(f *testing.F) {
	for _, s := range []string{`"k"`, `k`, `""`, `"`, `"a\"b"`, `"a\x"`, `a,b`, `"a";b`, "\x00", strings.Repeat("z", 300), `"é"`} {
		f.Add(s)
	}
	e := dbtest.SQLite(f)
	store := NewStore(e.DB, Options{})
	p := newProbe()
	c, err := queue.New(queue.Config{Driver: e.Driver})
	if err != nil {
		f.Fatal(err)
	}
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Idempotency: store, Modules: []httpapi.Module{p}}))(f)
	f.Fuzz(func(t *testing.T, v string) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/probe/status/201", strings.NewReader("{}"))
		req.Header[Header] = []string{v}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated && rec.Code != http.StatusBadRequest {
			t.Fatalf("%q: status %d: %s", v, rec.Code, rec.Body)
		}
	})
}
