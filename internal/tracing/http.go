package tracing

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/kilnhq/kiln/internal/httpapi"
)

// RequestIDKey is the span attribute holding the request id (the
// X-Request-ID the response carries), to go from a trace to the logs.
const RequestIDKey = attribute.Key("kiln.request_id")

// Middleware returns the server middleware for httpapi.Config.Middleware,
// or nil when tracing is off. Each request gets a span of kind Server,
// child of the incoming W3C traceparent if any, named by the matched
// route pattern ("GET /api/v1/users/{id}"; never the raw path, which
// holds ids), with http.request.method, http.route,
// http.response.status_code and the request id; a 5xx sets its status to
// Error. Handlers see the span in the request's context, so that jobs
// they enqueue carry it.
func (t *Tracing) Middleware() func(http.Handler) http.Handler {
	if !t.Enabled() {
		return nil
	}
	return t.middleware
}

func (t *Tracing) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if len(r.Header["Traceparent"]) > 0 || len(r.Header["Baggage"]) > 0 {
			// Most requests carry neither: skip the propagator then.
			ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		m := methodOf(r.Method)
		ctx, span := t.tracer.Start(ctx, m.span, trace.WithSpanKind(trace.SpanKindServer))
		if !span.IsRecording() {
			// Not sampled: the context still carries the trace (and the
			// decision) into jobs, but nothing is recorded.
			next.ServeHTTP(w, r.WithContext(ctx))
			span.End()
			return
		}
		sw := &statusRecorder{ResponseWriter: w}
		returned := false
		defer func() {
			if !returned {
				// The handler panicked: the access log outside turns it
				// into a 500. The panic goes on untouched, so that its
				// stack is logged as it was.
				finish(ctx, span, m, http.StatusInternalServerError, "panic")
			}
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
		returned = true
		status := sw.status
		if status == 0 {
			status = http.StatusOK // a handler that wrote nothing sent 200
		}
		finish(ctx, span, m, status, "")
	})
}

// finish names the server span of the request ctx belongs to by its
// route, sets its attributes and status, and ends it.
func finish(ctx context.Context, span trace.Span, m method, status int, errMsg string) {
	attrs := [4]attribute.KeyValue{
		m.attr,
		semconv.HTTPResponseStatusCode(status),
		RequestIDKey.String(httpapi.RequestID(ctx)),
	}
	n := 3
	if pattern := httpapi.RoutePattern(ctx); pattern != "unmatched" {
		span.SetName(pattern)
		if _, path, ok := strings.Cut(pattern, " "); ok {
			attrs[n] = semconv.HTTPRoute(path)
			n++
		}
	}
	span.SetAttributes(attrs[:n]...)
	if status >= 500 {
		span.SetStatus(codes.Error, errMsg)
	}
	span.End()
}

// method is what spans say of a request method.
type method struct {
	// span names a server span before its route is known.
	span string
	// client names a client span.
	client string
	// attr is http.request.method: the method, or _OTHER for one that is
	// not standard, so that the set of values stays bounded.
	attr attribute.KeyValue
}

var (
	methods = func() map[string]method {
		out := map[string]method{}
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
			http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace} {
			out[m] = method{span: "HTTP " + m, client: m, attr: semconv.HTTPRequestMethodKey.String(m)}
		}
		return out
	}()
	otherMethod = method{span: "HTTP", client: "HTTP", attr: semconv.HTTPRequestMethodKey.String("_OTHER")}
)

// methodOf returns the names and attribute of method m.
func methodOf(m string) method {
	if v, ok := methods[m]; ok {
		return v
	}
	return otherMethod
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first final status and passes it on.
func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200 and passes b on.
func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush sends buffered data to the client, when the writer underneath
// can.
func (w *statusRecorder) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// HTTPClient returns a transport that wraps base (http.DefaultTransport
// if nil) in a span of kind Client per request, child of the request
// context's span, and sends the trace context along in traceparent and
// tracestate. The span ends when the response headers arrive; a
// transport error or a status of 400 or more sets its status to Error.
// With tracing off it returns base as it is.
func (t *Tracing) HTTPClient(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if !t.Enabled() {
		return base
	}
	return &transport{t: t, base: base}
}

// transport is the client side of [Tracing.HTTPClient].
type transport struct {
	t    *Tracing
	base http.RoundTripper
}

// RoundTrip sends req in a client span with the trace context in its
// headers. req itself is not modified.
func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	m := methodOf(req.Method)
	attrs := []attribute.KeyValue{m.attr}
	if host, port := hostPort(req); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	ctx, span := tr.t.tracer.Start(req.Context(), m.client, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	out := req.Clone(ctx)
	tr.t.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	resp, err := tr.base.RoundTrip(out)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return resp, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, "")
	}
	span.End()
	return resp, nil
}

// hostPort returns the server a request goes to, with the scheme's
// default port when the URL names none.
func hostPort(req *http.Request) (string, int) {
	if req.URL == nil {
		return "", 0
	}
	host, p := req.URL.Hostname(), req.URL.Port()
	if p == "" {
		switch strings.ToLower(req.URL.Scheme) {
		case "http":
			p = "80"
		case "https":
			p = "443"
		}
	}
	port, _ := strconv.Atoi(p)
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return host, port
}
