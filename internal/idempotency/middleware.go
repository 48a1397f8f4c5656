package idempotency

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/crashpoint"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/httpapi"
)

// CrashBeforeStore is the crash point (see package crashpoint) between a
// keyed request's handler, whose work has committed, and the storing of
// its response. A repeat that returns work an earlier attempt committed
// does not reach it.
const CrashBeforeStore = "idempotency.before-store"

// finishTimeout bounds storing or releasing a record after the handler
// ran; it does not depend on the client still being connected.
const finishTimeout = 10 * time.Second

// Middleware makes next idempotent for requests that carry an
// Idempotency-Key header; requests without it pass straight through.
//
// The first request with a key reserves it, runs next with its response
// buffered, and stores a 2xx, 3xx or 4xx response for [Options.TTL]
// before sending it. next's context carries the key as a
// [database.OnceKey]: a handler whose work goes through [database.Once]
// records its outcome in the transaction of the work, and should the
// process die before the response is stored, a repeat of the request
// (once the lock of [Options.LockTimeout], or of a few seconds after the
// commit, has run out) runs next again with that outcome, which Once
// returns instead of doing the work again. The request body is read whole
// first, to fingerprint it: up to [bufferLimit] in memory, beyond that
// into a temporary file in [Options.SpoolDir], so that a keyed upload is
// never held in memory. A 5xx, a panic, or a response larger than
// [Options.MaxBody] (or one the handler flushes) releases the key so that
// the client may retry. A repeat of the same request (same method, route,
// path, query and body) gets the stored response with
// Idempotent-Replayed: true, without next running again; a repeat while
// the first is still served gets 409 with Retry-After; the key sent with
// a different request gets 422. Keys are per caller
// ([httpapi.PrincipalFrom]), so the middleware must run after
// authentication.
func (s *Store) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values := r.Header.Values(Header)
		if len(values) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		key, _, err := parseKey(values)
		if err != nil {
			msg := err.Error()
			httpapi.WriteError(w, r, &httpapi.Error{
				Code:    httpapi.CodeInvalid,
				Message: fmt.Sprintf("header %q %s", Header, msg),
				Fields:  []httpapi.FieldError{{Field: Header, Message: msg}},
			})
			return
		}
		hash, cleanup, err := s.fingerprint(r)
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		defer cleanup()
		var principal string
		if p, ok := httpapi.PrincipalFrom(r.Context()); ok {
			principal = p.TokenID
		}
		out, res, rec, err := s.begin(r.Context(), principal, key, hash)
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		switch out {
		case mismatch:
			httpapi.WriteError(w, r, &httpapi.Error{
				Code:    httpapi.CodeUnprocessable,
				Message: fmt.Sprintf("this %s was already used for a different request; send a new key with a new request", Header),
				Fields:  []httpapi.FieldError{{Field: Header, Message: "was used for a different request"}},
			})
		case busy:
			w.Header().Set("Retry-After", "1")
			httpapi.WriteError(w, r, &httpapi.Error{
				Code:    httpapi.CodeConflict,
				Message: fmt.Sprintf("a request with this %s is still being processed; retry later", Header),
				Fields:  []httpapi.FieldError{{Field: Header, Message: "is in use by a request in progress"}},
			})
		case replay:
			writeReplay(w, r, rec)
		case reserved:
			s.serve(w, r, next, res)
		}
	})
}

// serve runs next for the request holding res and stores or releases the
// key depending on the response.
func (s *Store) serve(w http.ResponseWriter, r *http.Request, next http.Handler, res reservation) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), finishTimeout)
	defer cancel()
	log := httpapi.Logger(r.Context())
	cw := &captureWriter{w: w, limit: s.opts.MaxBody}
	returned := false
	defer func() {
		if returned {
			return
		}
		// next panicked (or exited its goroutine): free the key for a
		// retry and let the panic go on to the recovery middleware.
		if err := s.release(ctx, res); err != nil {
			log.Error("release idempotency key after a panic", "err", err)
		}
	}()
	if res.work != nil {
		// An earlier attempt of this request committed its work and died
		// before its response was stored: the handler returns that work
		// (database.Once) and the response says it is a replay.
		w.Header().Set(ReplayedHeader, "true")
	}
	next.ServeHTTP(cw, r.WithContext(database.WithOnce(r.Context(), &holder{s: s, res: res})))
	returned = true
	if res.work == nil {
		crashpoint.Hit(CrashBeforeStore)
	}

	status := cw.status
	if status == 0 {
		status = http.StatusOK
	}
	switch {
	case cw.direct:
		// Already sent (too large to store, or flushed): not replayable.
		if err := s.release(ctx, res); err != nil {
			log.Error("release idempotency key", "err", err)
		}
		return
	case status >= 500:
		if err := s.release(ctx, res); err != nil {
			log.Error("release idempotency key", "err", err)
		}
	default:
		stored, err := s.complete(ctx, res, status, storedHeader(w.Header()), cw.buf.Bytes(), s.now())
		switch {
		case err != nil:
			log.Error("store idempotent response", "err", err)
			if err := s.release(ctx, res); err != nil {
				log.Error("release idempotency key", "err", err)
			}
		case !stored:
			log.Warn("idempotent response not stored: the request outlived its lock and the key was taken over", "lock_timeout", s.opts.LockTimeout.String())
		}
	}
	send(w, r, status, cw.buf.Bytes())
}

// writeReplay sends a stored response.
func writeReplay(w http.ResponseWriter, r *http.Request, rec record) {
	h := w.Header()
	for k, v := range rec.headers {
		h[k] = v
	}
	h.Set(ReplayedHeader, "true")
	send(w, r, rec.status, rec.body)
}

// send writes a complete response with its length.
func send(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	if status != http.StatusNoContent && status != http.StatusNotModified {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if len(body) == 0 {
		return
	}
	if _, err := w.Write(body); err != nil {
		httpapi.Logger(r.Context()).Debug("write response", "err", err)
	}
}

// unstored are the response headers never stored (canonical names):
// hop-by-hop fields, those the server sets per response, and the request
// id.
var unstored = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range []string{
		"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Date", "Content-Length",
		ReplayedHeader, httpapi.RequestIDHeader,
	} {
		m[textproto.CanonicalMIMEHeaderKey(k)] = true
	}
	return m
}()

// storedHeader returns the headers of h worth replaying.
func storedHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	named := map[string]bool{}
	for _, v := range h.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			named[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f))] = true
		}
	}
	for k, v := range h {
		if unstored[textproto.CanonicalMIMEHeaderKey(k)] || named[textproto.CanonicalMIMEHeaderKey(k)] || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	return out
}

// captureWriter buffers a handler's response so that it can be stored
// before it is sent. It shares the real writer's header map. A body over
// limit, or a Flush, switches it to writing through (direct), after which
// the response is not stored.
type captureWriter struct {
	w      http.ResponseWriter
	limit  int
	status int
	buf    bytes.Buffer
	direct bool
}

func (c *captureWriter) Header() http.Header { return c.w.Header() }

func (c *captureWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if c.direct {
		c.w.WriteHeader(code)
		return
	}
	if c.status != 0 || code < 200 {
		return // superfluous, or informational: not part of the stored response
	}
	c.status = code
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if !c.direct && c.buf.Len()+len(p) > c.limit {
		if err := c.goDirect(); err != nil {
			return 0, err
		}
	}
	if c.direct {
		return c.w.Write(p)
	}
	return c.buf.Write(p)
}

// Flush sends what is buffered and writes through from then on.
func (c *captureWriter) Flush() {
	if !c.direct {
		if err := c.goDirect(); err != nil {
			return
		}
	}
	_ = http.NewResponseController(c.w).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (c *captureWriter) Unwrap() http.ResponseWriter { return c.w }

// goDirect sends the status and the buffered body and switches to writing
// through.
func (c *captureWriter) goDirect() error {
	c.direct = true
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.w.WriteHeader(c.status)
	if c.buf.Len() == 0 {
		return nil
	}
	_, err := c.w.Write(c.buf.Bytes())
	c.buf = bytes.Buffer{}
	return err
}
