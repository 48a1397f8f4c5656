package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"
)

type ctxKey int

// keyState holds the request's *reqState.
const keyState ctxKey = 0

// reqState is what the middleware knows about one request. One value in
// the context (rather than one per fact) keeps the per-request cost to a
// single context and request copy.
type reqState struct {
	id      string
	base    *slog.Logger
	pattern string // the matched route, set by the mux's handler
	// principal is set by withAuth before the handler runs.
	principal    Principal
	hasPrincipal bool
	logger       atomic.Pointer[slog.Logger] // base with the request's fields, made on first use
}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(keyState).(*reqState)
	return st
}

// RequestIDHeader carries the request id in both directions.
const RequestIDHeader = "X-Request-ID"

// maxRequestID is the longest incoming request id kept.
const maxRequestID = 128

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	if st := stateOf(ctx); st != nil {
		return st.id
	}
	return ""
}

// Logger returns the request's logger (with its request id), or a logger
// that discards.
func Logger(ctx context.Context) *slog.Logger {
	st := stateOf(ctx)
	if st == nil {
		return discardLogger
	}
	if l := st.logger.Load(); l != nil {
		return l
	}
	l := st.base.With("request_id", st.id)
	if st.hasPrincipal {
		l = l.With("token", st.principal.TokenID)
	}
	if !st.logger.CompareAndSwap(nil, l) {
		return st.logger.Load()
	}
	return l
}

// validRequestID accepts 1-128 printable ASCII characters: anything else
// could forge log lines or bloat them.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RoutePattern returns the pattern of the route that served the request
// ctx belongs to ("GET /api/v1/users/{id}"), or "unmatched". It is known
// once the handler has returned; middleware reads it then.
func RoutePattern(ctx context.Context) string {
	if st := stateOf(ctx); st != nil && st.pattern != "" {
		return st.pattern
	}
	return "unmatched"
}

// withRequest gives each request an id (a sane incoming X-Request-ID, else
// a new one), echoes it, and puts it in the request's logger.
func withRequest(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header()[RequestIDHeader] = []string{id}
		st := &reqState{id: id, base: log}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyState, st)))
	})
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withAccessLog logs one line per request with the route pattern (never
// the raw path, which may hold ids or secrets), the status and the
// duration, and tells the observers. It also recovers panics into a 500
// problem.
func withAccessLog(obs []Observer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		for _, o := range obs {
			o.RequestStarted()
		}
		st := stateOf(r.Context())
		if st == nil { // served without withRequest (tests)
			st = &reqState{base: discardLogger}
			r = r.WithContext(context.WithValue(r.Context(), keyState, st))
		}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			route := RoutePattern(r.Context())
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				Logger(r.Context()).Error("panic serving request", "route", route, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if !sw.wrote {
					WriteError(sw, r, &Error{Code: CodeInternal, Err: fmt.Errorf("panic: %v", v)})
				}
			}
			d := time.Since(start)
			if !sw.wrote {
				sw.status = http.StatusOK // a handler that wrote nothing sent 200
			}
			if ctx := r.Context(); st.base.Enabled(ctx, slog.LevelInfo) {
				// One line with every field, without building the
				// request's logger (slog.Logger.With) just for it.
				attrs := make([]slog.Attr, 0, 6)
				attrs = append(attrs, slog.String("request_id", st.id))
				if st.hasPrincipal {
					attrs = append(attrs, slog.String("token", st.principal.TokenID))
				}
				attrs = append(attrs, slog.String("method", r.Method), slog.String("route", route),
					slog.Int("status", sw.status), slog.String("duration", d.String()))
				st.base.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
			}
			for _, o := range obs {
				o.RequestDone(r.Context(), r.Method, route, sw.status, d)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// withBodyLimit caps request bodies at limit bytes; reading past it fails
// with *http.MaxBytesError, which readBody reports as 413.
func withBodyLimit(limit int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			WriteError(w, r, Errorf(CodeTooLarge, "the request body is %d bytes; the limit is %d", r.ContentLength, limit))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

// withReadTimeout moves the connection's read deadline to d from now, so
// that an upload may take longer than the server's ReadTimeout.
func withReadTimeout(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Not every writer can (an httptest recorder cannot); the
		// server's own deadline then applies.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		next.ServeHTTP(w, r)
	})
}

// setRoute records the matched pattern for the access log.
func setRoute(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := stateOf(r.Context()); st != nil {
			st.pattern = r.Pattern
		}
		h.ServeHTTP(w, r)
	})
}

// bufferedWriter collects the mux's own 404 and 405 replies so that they
// can be rewritten as problems.
type bufferedWriter struct {
	h      http.Header
	status int
}

func (b *bufferedWriter) Header() http.Header         { return b.h }
func (b *bufferedWriter) Write(p []byte) (int, error) { return len(p), nil }
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

// problemMux serves mux, turning the replies the mux makes itself for
// unknown paths (404), wrong methods (405, with Allow) and the request
// target * (400; the server answers OPTIONS * itself) into problems.
// Redirects the mux makes (path cleaning) pass through.
func problemMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI == "*" {
			w.Header().Set("Connection", "close")
			WriteError(w, r, Errorf(CodeInvalid, "the request target must be a path, not *"))
			return
		}
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		b := &bufferedWriter{h: http.Header{}}
		h.ServeHTTP(b, r)
		switch b.status {
		case http.StatusNotFound:
			WriteError(w, r, Errorf(CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", b.h.Get("Allow"))
			WriteError(w, r, Errorf(CodeMethodNotAllowed, "method %s is not allowed here; allowed: %s", r.Method, b.h.Get("Allow")))
		default:
			mux.ServeHTTP(w, r)
		}
	})
}
