package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/testutil"
)

func TestUnknownRouteAndWrongMethod(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{"/", "/api/v1/nope", "/api/v2/jobs", "/api/v1/jobs/1/explode"} {
		p := testutil.ProblemOf(t, e.Do("GET", path, ""), 404)
		if p.Code != string(CodeNotFound) {
			t.Errorf("%s: code %s", path, p.Code)
		}
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"PUT", "/api/v1/jobs", "GET, HEAD, POST"},
		{"PATCH", "/api/v1/jobs/1", "DELETE, GET, HEAD"},
		{"GET", "/api/v1/jobs/1/retry", "POST"},
		{"DELETE", "/api/v1/queues", "GET, HEAD"},
	} {
		r := e.Do(tc.method, tc.path, "")
		p := testutil.ProblemOf(t, r, 405)
		if got := r.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		if p.Code != string(CodeMethodNotAllowed) || !strings.Contains(p.Detail, tc.method) {
			t.Errorf("%s %s: %+v", tc.method, tc.path, p)
		}
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.Do("GET", "/api/v1/kinds", "", RequestIDHeader, "abc-123")
	if got := r.Header.Get(RequestIDHeader); got != "abc-123" {
		t.Errorf("incoming id not echoed: %q", got)
	}
	gen := e.Do("GET", "/api/v1/kinds", "").Header.Get(RequestIDHeader)
	if len(gen) != 24 {
		t.Errorf("generated id %q", gen)
	}
	for _, bad := range []string{strings.Repeat("x", 129), "has space", "tab\there", "ünïcode"} {
		got := e.Do("GET", "/api/v1/kinds", "", RequestIDHeader, bad).Header.Get(RequestIDHeader)
		if got == bad || len(got) != 24 {
			t.Errorf("bad incoming id %q kept or not replaced: %q", bad, got)
		}
	}
	if got := e.Do("GET", "/api/v1/kinds", "", RequestIDHeader, strings.Repeat("y", 128)).Header.Get(RequestIDHeader); got != strings.Repeat("y", 128) {
		t.Errorf("128-character id replaced: %q", got)
	}
	// The access log names the route pattern, never the raw path, and
	// carries the request id.
	e.Do("GET", "/api/v1/jobs/77", "", RequestIDHeader, "trace-me")
	var found bool
	for line := range strings.SplitSeq(e.logs.String(), "\n") {
		if !strings.Contains(line, `"request_id":"trace-me"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] != "request" {
			continue
		}
		found = true
		if m["route"] != "GET /api/v1/jobs/{id}" || m["method"] != "GET" || m["status"] != 404.0 || m["duration"] == "" {
			t.Errorf("access log line: %s", line)
		}
		if strings.Contains(line, "/77") {
			t.Errorf("access log has the raw path: %s", line)
		}
	}
	if !found {
		t.Errorf("no access log line for the request:\n%s", e.logs)
	}
}

func TestPanicIsAProblem(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(a *API) {
		a.Handle("GET /boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic("secret database password is hunter2")
		}))
	})
	r := e.Do("GET", "/boom", "", RequestIDHeader, "panic-1")
	p := testutil.ProblemOf(t, r, 500)
	if strings.Contains(string(r.Body), "hunter2") || strings.Contains(string(r.Body), "goroutine") {
		t.Errorf("500 leaks internals: %s", r.Body)
	}
	if p.Code != string(CodeInternal) || p.RequestID != "panic-1" {
		t.Errorf("problem: %+v", p)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "hunter2") || !strings.Contains(logs, "router_test.go") || !strings.Contains(logs, `"request_id":"panic-1"`) {
		t.Errorf("panic not logged with its stack and request id:\n%s", logs)
	}
	// The server survives.
	if r := e.Do("GET", "/api/v1/kinds", ""); r.Status != 200 {
		t.Errorf("after panic: %d", r.Status)
	}
}

func TestDefaultBodyLimit(t *testing.T) {
	t.Parallel()
	c := newClient(t, make(chan struct{}))
	a, err := New(Config{Jobs: c})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, a)
	big := `{"kind":"noop","args":{"x":"` + strings.Repeat("a", DefaultBodyLimit) + `"}}`
	resp, err := http.Post(srv+"/api/v1/jobs", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 413 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("1 MiB+ body: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// A chunked body (no Content-Length) is cut off while reading.
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(big))
		pw.Close()
	}()
	resp2, err := http.Post(srv+"/api/v1/jobs", "application/json", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	if resp2.StatusCode != 413 {
		t.Errorf("chunked 1 MiB+ body: %d", resp2.StatusCode)
	}
}

// TestRouteBodyLimit: a route's own BodyLimit replaces the API's for that
// route alone, for a declared length and for a chunked body alike.
func TestRouteBodyLimit(t *testing.T) {
	t.Parallel()
	c := newClient(t, make(chan struct{}))
	upload := func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, r, http.StatusOK, map[string]int64{"bytes": n})
	}
	mod := fakeModule{[]Route{{Pattern: "POST /api/v1/uploads", Handler: upload, BodyLimit: 4 << 20, ReadTimeout: time.Minute}},
		`{"paths":{"/api/v1/uploads":{"post":{"responses":{"200":{"description":"x"}}}}}}`}
	a, err := New(Config{Jobs: c, Modules: []Module{mod}})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, a)
	post := func(path string, n int, chunked bool) int {
		ct := "application/octet-stream"
		if path == "/api/v1/jobs" {
			ct = "application/json"
		}
		t.Helper()
		var body io.Reader = bytes.NewReader(make([]byte, n))
		if chunked {
			body = io.MultiReader(body) // hides the length
		}
		resp, err := http.Post(srv+path, ct, body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	for _, chunked := range []bool{false, true} {
		if got := post("/api/v1/uploads", 3<<20, chunked); got != 200 {
			t.Errorf("3 MiB upload (chunked %v): %d, want 200", chunked, got)
		}
		if got := post("/api/v1/uploads", 5<<20, chunked); got != 413 {
			t.Errorf("5 MiB upload (chunked %v): %d, want 413", chunked, got)
		}
		if got := post("/api/v1/jobs", 2<<20, chunked); got != 413 {
			t.Errorf("2 MiB job body (chunked %v): %d, want 413 from the API's limit", chunked, got)
		}
	}
	if _, err := New(Config{Jobs: c, Modules: []Module{fakeModule{[]Route{{Pattern: "POST /api/v1/uploads", Handler: upload, BodyLimit: -1}}, mod.doc}}}); err == nil {
		t.Error("a negative BodyLimit was accepted")
	}
}

// runServer serves h with NewServer and Serve on a loopback port until
// cancel and returns its URL; done receives what Serve returned.
func runServer(t *testing.T, h http.Handler) (url string, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, NewServer(h, nil), ln, 5*time.Second) }()
	return "http://" + ln.Addr().String(), cancel, served
}

// newServer serves h as runServer does until the test ends and returns
// its URL.
func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	url, cancel, done := runServer(t, h)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return url
}

func TestServerTimeoutsAndGracefulShutdown(t *testing.T) {
	t.Parallel()
	srv := NewServer(http.NotFoundHandler(), nil)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("server without limits: %+v", srv)
	}
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		time.Sleep(200 * time.Millisecond)
		_, _ = io.WriteString(w, "finished")
	})
	url, cancel, done := runServer(t, h)
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-started
	cancel()
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request: %q %v", r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("server still accepts after shutdown")
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.Do("GET", "/api/v1/openapi.json", "")
	if r.Status != 200 || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	if _, ok := doc.Components.Schemas["Problem"]; !ok {
		t.Error("no Problem schema")
	}
	for _, m := range e.api.DocMismatches() {
		t.Error(m)
	}
	var registered []string
	for _, p := range e.api.Patterns() {
		if _, path, _ := strings.Cut(p, " "); strings.HasPrefix(path, Prefix+"/") {
			registered = append(registered, p)
		}
	}
	if len(registered) != 12 {
		t.Errorf("%d routes registered: %v", len(registered), registered)
	}
}

// fakeModule is a module whose document can disagree with its routes.
type fakeModule struct {
	routes []Route
	doc    string
}

func (m fakeModule) Routes() []Route { return m.routes }
func (m fakeModule) OpenAPI() []byte { return []byte(m.doc) }

func TestDocMismatchesFindsDifferences(t *testing.T) {
	t.Parallel()
	c := newClient(t, make(chan struct{}))
	ok := func(http.ResponseWriter, *http.Request) {}
	for _, tc := range []struct {
		name string
		mod  fakeModule
		want string
	}{
		{"undocumented route", fakeModule{[]Route{{Pattern: "GET /api/v1/things", Handler: ok}}, `{"paths":{}}`},
			"route GET /api/v1/things is not in the OpenAPI document"},
		{"documented non-route", fakeModule{nil, `{"paths":{"/api/v1/ghost":{"get":{"responses":{"200":{"description":"x"}}}}}}`},
			"the OpenAPI document has GET /api/v1/ghost, which is not a route"},
		{"undeclared parameter", fakeModule{[]Route{{Pattern: "GET /api/v1/things/{id}", Handler: ok}},
			`{"paths":{"/api/v1/things/{id}":{"get":{"responses":{"200":{"description":"x"}}}}}}`},
			"get /api/v1/things/{id} does not declare path parameter id"},
		{"no responses", fakeModule{[]Route{{Pattern: "GET /api/v1/things", Handler: ok}},
			`{"paths":{"/api/v1/things":{"get":{}}}}`},
			"get /api/v1/things has no responses"},
	} {
		a, err := New(Config{Jobs: c, Modules: []Module{tc.mod}})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := a.DocMismatches(); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: mismatches %q, want [%q]", tc.name, got, tc.want)
		}
	}
	// A module may not redefine a path or a schema of another.
	for _, doc := range []string{
		`{"paths":{"/api/v1/jobs":{}}}`,
		`{"components":{"schemas":{"Problem":{}}}}`,
		`{"info":{}}`,
		`not json`,
	} {
		if _, err := New(Config{Jobs: c, Modules: []Module{fakeModule{nil, doc}}}); err == nil {
			t.Errorf("fragment %s accepted", doc)
		}
	}
	// An operation that lost a status its middleware may answer.
	a, err := New(Config{Jobs: c, Idempotency: passThrough{}})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(a.doc, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc["paths"].(map[string]any)["/api/v1/jobs/{id}/cancel"].(map[string]any)["post"].(map[string]any)["responses"].(map[string]any), "409")
	if a.doc, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	want := "POST /api/v1/jobs/{id}/cancel does not document 409, which the middleware around it may answer"
	if got := a.DocMismatches(); len(got) != 1 || got[0] != want {
		t.Errorf("undocumented middleware status: mismatches %q, want [%q]", got, want)
	}
	// A route outside the prefix is refused.
	if _, err := New(Config{Jobs: c, Modules: []Module{fakeModule{[]Route{{Pattern: "GET /elsewhere", Handler: ok}}, `{}`}}}); err == nil {
		t.Error("route outside /api/v1 accepted")
	}
}

type denyAll struct{}

func (denyAll) Authenticate(context.Context, string) (Principal, error) {
	return Principal{}, ErrUnauthenticated
}

// passThrough is idempotency middleware that changes nothing but declares
// the answers the real one gives.
type passThrough struct{}

func (passThrough) Middleware(h http.Handler) http.Handler { return h }
func (passThrough) Responses() map[int]string {
	return map[int]string{400: "Bad key.", 409: "Key in use.", 422: "Key reused.", 503: "Key store unavailable."}
}

func TestDocDescribesScopesAndIdempotency(t *testing.T) {
	t.Parallel()
	c := newClient(t, make(chan struct{}))
	a, err := New(Config{Jobs: c, Auth: denyAll{}, Idempotency: passThrough{}})
	if err != nil {
		t.Fatal(err)
	}
	type response struct {
		Ref         string `json:"$ref"`
		Description string `json:"description"`
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Scope      string              `json:"x-kiln-scope"`
			Parameters []json.RawMessage   `json:"parameters"`
			Responses  map[string]response `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(a.Doc(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, path, scope string }{
		{"get", "/api/v1/jobs", "read"},
		{"post", "/api/v1/jobs", "write"},
		{"delete", "/api/v1/jobs/{id}", "admin"},
		{"post", "/api/v1/jobs/{id}/cancel", "write"},
		{"post", "/api/v1/queues/{name}/pause", "admin"},
	} {
		op := doc.Paths[tc.path][tc.method]
		if op.Scope != tc.scope {
			t.Errorf("%s %s: x-kiln-scope %q, want %q", tc.method, tc.path, op.Scope, tc.scope)
		}
		if r := op.Responses["401"]; r.Ref != "#/components/responses/Unauthorized" {
			t.Errorf("%s %s: 401 response %+v", tc.method, tc.path, r)
		}
		if _, ok := op.Responses["403"]; ok != (tc.scope != "read") {
			t.Errorf("%s %s: 403 documented %v", tc.method, tc.path, ok)
		}
		// The body limit and panic recovery wrap every route.
		if r := op.Responses["413"]; !strings.Contains(r.Description, "1 MiB") {
			t.Errorf("%s %s: 413 response %+v, want one naming the 1 MiB limit", tc.method, tc.path, r)
		}
		if _, ok := op.Responses["500"]; !ok {
			t.Errorf("%s %s: no 500 response", tc.method, tc.path)
		}
		params, _ := json.Marshal(op.Parameters)
		hasKey := strings.Contains(string(params), "IdempotencyKey")
		if hasKey != (tc.method == "post") {
			t.Errorf("%s %s: Idempotency-Key parameter %v", tc.method, tc.path, hasKey)
		}
		// Every answer the idempotency middleware declares is on every
		// POST; an operation's own description of a status stands.
		if tc.method != "post" {
			if r, ok := op.Responses["409"]; ok && r.Description == "Key in use." {
				t.Errorf("%s %s: idempotency's 409 on an operation it does not wrap", tc.method, tc.path)
			}
			continue
		}
		for status := range (passThrough{}).Responses() {
			if r := op.Responses[strconv.Itoa(status)]; r.Description == "" {
				t.Errorf("%s %s: no %d response", tc.method, tc.path, status)
			}
		}
	}
	if got := doc.Paths["/api/v1/jobs/{id}/cancel"]["post"].Responses["409"].Description; got != "Key in use." {
		t.Errorf("cancel's 409: %q, want the middleware's", got)
	}
	if got := doc.Paths["/api/v1/jobs"]["post"].Responses["422"].Description; got == "Key reused." {
		t.Errorf("POST /jobs's own 422 was replaced by the middleware's")
	}
	if m := a.DocMismatches(); len(m) != 0 {
		t.Errorf("mismatches: %v", m)
	}
}

// recordingObserver records what the API tells observers.
type recordingObserver struct {
	mu      sync.Mutex
	started int
	done    []string
}

func (o *recordingObserver) RequestStarted() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started++
}

func (o *recordingObserver) RequestDone(ctx context.Context, method, route string, status int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d <= 0 || RequestID(ctx) == "" {
		route = "bad duration or no request id: " + route
	}
	o.done = append(o.done, fmt.Sprintf("%s|%s|%d", method, route, status))
}

func TestObserversSeeRoutePatterns(t *testing.T) {
	t.Parallel()
	c := newClient(t, make(chan struct{}))
	obs := &recordingObserver{}
	a, err := New(Config{Jobs: c, Observers: []Observer{obs}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	for _, path := range []string{"/api/v1/jobs/77", "/api/v1/kinds", "/nowhere/123"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	want := []string{"GET|GET /api/v1/jobs/{id}|404", "GET|GET /api/v1/kinds|200", "GET|unmatched|404"}
	if obs.started != 3 || !slices.Equal(obs.done, want) {
		t.Errorf("started %d, done %q; want 3, %q", obs.started, obs.done, want)
	}
}

func TestProblemCodesDocumented(t *testing.T) {
	t.Parallel()
	var doc struct {
		Components struct {
			Schemas struct {
				Problem struct {
					Properties struct {
						Code struct {
							Enum []string `json:"enum"`
						} `json:"code"`
					} `json:"properties"`
				} `json:"Problem"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	var codes []string
	for c := range codeStatus {
		codes = append(codes, string(c))
	}
	documented := doc.Components.Schemas.Problem.Properties.Code.Enum
	slices.Sort(codes)
	slices.Sort(documented)
	if !slices.Equal(codes, documented) {
		t.Errorf("Problem.code enum %v, error codes %v", documented, codes)
	}
}

func TestMiddlewareSeesRoutePattern(t *testing.T) {
	t.Parallel()
	c := newClient(t, make(chan struct{}))
	var mu sync.Mutex
	var got []string
	mw := func(tag string) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next.ServeHTTP(w, r)
				mu.Lock()
				defer mu.Unlock()
				got = append(got, tag+" "+RoutePattern(r.Context())+" "+RequestID(r.Context()))
			})
		}
	}
	a, err := New(Config{Jobs: c, Middleware: []func(http.Handler) http.Handler{mw("outer"), mw("inner")}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/jobs/5", nil)
	req.Header.Set(RequestIDHeader, "mw-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"inner GET /api/v1/jobs/{id} mw-1", "outer GET /api/v1/jobs/{id} mw-1"}
	if !slices.Equal(got, want) {
		t.Errorf("middleware saw %q, want %q", got, want)
	}
	if RoutePattern(context.Background()) != "unmatched" {
		t.Error("RoutePattern outside a request")
	}
}
