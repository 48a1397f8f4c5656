package tracing

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/queue"
)

var errBoom = errors.New("boom: the store is down")

// serveTraced serves the API (jobs, queues and testModule) with r's
// middleware, on a client that works nothing.
func serveTraced(t testing.TB, r recorded) *httptest.Server {
	t.Helper()
	c := dbtest.SQLite(t).Client(t, queue.Config{}, false)
	a, err := httpapi.New(httpapi.Config{
		Jobs:       c,
		Modules:    []httpapi.Module{testModule{}},
		Middleware: []func(http.Handler) http.Handler{r.Middleware()},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv
}

// get sends GET path with headers (name, value, …) and returns the
// response with its body read.
func get(t testing.TB, srv *httptest.Server, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestMiddlewareSpans: each request gets a server span named by its route
// pattern (never the raw path), with method, route, status and request
// id; 5xx and panics set status Error; 4xx do not.
func TestMiddlewareSpans(t *testing.T) {
	t.Parallel()
	r := newRecorded(t)
	srv := serveTraced(t, r)

	resp, body := get(t, srv, "/api/v1/tracetest/items/42", httpapi.RequestIDHeader, "req-42")
	if resp.StatusCode != 200 || !strings.Contains(body, `"42"`) {
		t.Fatalf("GET item: %d %s", resp.StatusCode, body)
	}
	resp, _ = get(t, srv, "/api/v1/tracetest/fail")
	if resp.StatusCode != 500 {
		t.Fatalf("GET fail: %d", resp.StatusCode)
	}
	resp, _ = get(t, srv, "/api/v1/tracetest/panic")
	if resp.StatusCode != 500 {
		t.Fatalf("GET panic: %d", resp.StatusCode)
	}
	resp, body = get(t, srv, "/api/v1/tracetest/stream")
	if resp.StatusCode != 202 || body != "part" {
		t.Fatalf("GET stream: %d %q (Flush must reach the connection)", resp.StatusCode, body)
	}
	resp, _ = get(t, srv, "/api/v1/tracetest/silent")
	if resp.StatusCode != 200 {
		t.Fatalf("GET silent: %d", resp.StatusCode)
	}
	resp, _ = get(t, srv, "/api/v1/no/such/route/17")
	if resp.StatusCode != 404 {
		t.Fatalf("GET unknown: %d", resp.StatusCode)
	}
	resp, _ = get(t, srv, "/api/v1/jobs/123456")
	if resp.StatusCode != 404 {
		t.Fatalf("GET missing job: %d", resp.StatusCode)
	}

	spans := r.spans(t)
	for _, s := range spans {
		if strings.Contains(s.Name, "42") || strings.Contains(s.Name, "17") || strings.Contains(s.Name, "123456") {
			t.Errorf("span name %q holds a raw path", s.Name)
		}
		if s.SpanKind != trace.SpanKindServer {
			t.Errorf("span %q has kind %s", s.Name, s.SpanKind)
		}
	}
	type want struct {
		name, route, status string
		code                codes.Code
	}
	for _, w := range []want{
		{"GET /api/v1/tracetest/items/{id}", "/api/v1/tracetest/items/{id}", "200", codes.Unset},
		{"GET /api/v1/tracetest/fail", "/api/v1/tracetest/fail", "500", codes.Error},
		{"GET /api/v1/tracetest/panic", "/api/v1/tracetest/panic", "500", codes.Error},
		{"GET /api/v1/tracetest/stream", "/api/v1/tracetest/stream", "202", codes.Unset},
		{"GET /api/v1/tracetest/silent", "/api/v1/tracetest/silent", "200", codes.Unset},
		{"HTTP GET", "", "404", codes.Unset},
		{"GET /api/v1/jobs/{id}", "/api/v1/jobs/{id}", "404", codes.Unset},
	} {
		s := one(t, spans, w.name)
		if got, _ := attr(s, "http.response.status_code"); got != w.status {
			t.Errorf("%s: status attribute %q, want %s", w.name, got, w.status)
		}
		if got, _ := attr(s, "http.request.method"); got != "GET" {
			t.Errorf("%s: method attribute %q", w.name, got)
		}
		if got, ok := attr(s, "http.route"); got != w.route || ok != (w.route != "") {
			t.Errorf("%s: route attribute %q, want %q", w.name, got, w.route)
		}
		if s.Status.Code != w.code {
			t.Errorf("%s: span status %v, want %v", w.name, s.Status.Code, w.code)
		}
		if id, ok := attr(s, "kiln.request_id"); !ok || id == "" {
			t.Errorf("%s: no request id attribute", w.name)
		}
		if s.Parent.IsValid() {
			t.Errorf("%s: a request without traceparent has parent %s", w.name, s.Parent.SpanID())
		}
	}
	if id, _ := attr(one(t, spans, "GET /api/v1/tracetest/items/{id}"), "kiln.request_id"); id != "req-42" {
		t.Errorf("request id attribute %q, want the request's X-Request-ID req-42", id)
	}
}

// TestMiddlewareExtractsTraceparent: a request with a W3C traceparent
// continues that trace, and its handler sees the new span.
func TestMiddlewareExtractsTraceparent(t *testing.T) {
	t.Parallel()
	r := newRecorded(t)
	srv := serveTraced(t, r)
	resp, _ := get(t, srv, "/api/v1/tracetest/items/7", "traceparent", testTraceparent, "tracestate", "vendor=abc")
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	// A malformed traceparent starts a new trace instead of failing.
	resp, _ = get(t, srv, "/api/v1/tracetest/items/8", "traceparent", "00-zz-yy-01")
	if resp.StatusCode != 200 {
		t.Fatalf("GET with a bad traceparent: %d", resp.StatusCode)
	}
	spans := named(r.spans(t), "GET /api/v1/tracetest/items/{id}")
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	var cont, fresh = spans[0], spans[1]
	if cont.SpanContext.TraceID() != testTraceID {
		cont, fresh = fresh, cont
	}
	if cont.SpanContext.TraceID() != testTraceID || cont.Parent.SpanID() != testSpanID || !cont.Parent.IsRemote() {
		t.Errorf("span trace %s parent %s, want trace %s parent %s (remote)", cont.SpanContext.TraceID(), cont.Parent.SpanID(), testTraceID, testSpanID)
	}
	if got := cont.SpanContext.TraceState().Get("vendor"); got != "abc" {
		t.Errorf("tracestate vendor=%q, want abc", got)
	}
	if fresh.Parent.IsValid() || fresh.SpanContext.TraceID() == testTraceID {
		t.Errorf("a bad traceparent was used: parent %v", fresh.Parent)
	}
}

// TestMiddlewareUnsampled: a request whose caller decided not to sample
// records no span but keeps the decision in the context.
func TestMiddlewareUnsampled(t *testing.T) {
	t.Parallel()
	r := newRecordedWith(t, sdktrace.ParentBased(sdktrace.AlwaysSample()))
	var seen trace.SpanContext
	h := r.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		seen = trace.SpanContextFromContext(req.Context())
	}))
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if len(r.spans(t)) != 0 {
		t.Errorf("an unsampled request was recorded")
	}
	if seen.TraceID() != testTraceID || seen.IsSampled() {
		t.Errorf("handler saw %v", seen)
	}
}

// TestHTTPClientInjects: the client transport sends the trace context
// and records a client span, child of the caller's span.
func TestHTTPClientInjects(t *testing.T) {
	t.Parallel()
	r := newRecorded(t)
	got := make(chan http.Header, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got <- req.Header.Clone()
		if req.URL.Path == "/missing" {
			http.NotFound(w, req)
		}
	}))
	defer srv.Close()
	client := &http.Client{Transport: r.HTTPClient(nil)}

	ctx, parent := r.tracer.Start(context.Background(), "job webhook.deliver")
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/hook?secret=s3", strings.NewReader("{}"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.Header.Get("traceparent") != "" {
		t.Error("the caller's request was modified")
	}
	h := <-got
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(h)))
	if !sc.IsValid() || sc.TraceID() != parent.SpanContext().TraceID() {
		t.Fatalf("server got traceparent %q, want trace %s", h.Get("traceparent"), parent.SpanContext().TraceID())
	}
	req, _ = http.NewRequestWithContext(ctx, "GET", srv.URL+"/missing", nil)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-got
	// A transport error ends the span with status Error.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	req, _ = http.NewRequestWithContext(ctx, "GET", deadURL, nil)
	if _, err := client.Do(req); err == nil {
		t.Fatal("a request to a closed server succeeded")
	}
	parent.End()

	spans := r.spans(t)
	post := one(t, spans, "POST")
	if post.SpanKind != trace.SpanKindClient || post.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span kind %s parent %s, want client under %s", post.SpanKind, post.Parent.SpanID(), parent.SpanContext().SpanID())
	}
	if sc.SpanID() != post.SpanContext.SpanID() {
		t.Errorf("server saw span %s, want the client span %s", sc.SpanID(), post.SpanContext.SpanID())
	}
	if v, _ := attr(post, "http.response.status_code"); v != "200" {
		t.Errorf("status attribute %q", v)
	}
	if v, _ := attr(post, "server.address"); v != "127.0.0.1" {
		t.Errorf("server.address %q", v)
	}
	for _, s := range spans {
		for _, a := range s.Attributes {
			if strings.Contains(a.Value.String(), "s3") {
				t.Errorf("span %s attribute %s holds the query: %s", s.Name, a.Key, a.Value.String())
			}
		}
	}
	gets := named(spans, "GET")
	if len(gets) != 2 {
		t.Fatalf("%d GET spans", len(gets))
	}
	for _, s := range gets {
		if s.Status.Code != codes.Error {
			t.Errorf("GET span (404 or refused) has status %v", s.Status.Code)
		}
	}
}
