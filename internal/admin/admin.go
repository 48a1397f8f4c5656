// Package admin is kiln's admin listener: profiling (net/http/pprof), a
// heap snapshot and the flight recorder's trace, on an address of its
// own (127.0.0.1:6060 by default), apart from the API.
//
// The listener never serves a non-loopback address without a token: [New]
// refuses to. With a token, every route needs it, on any address.
//
// Importing this package imports net/http/pprof, whose init registers its
// handlers on [http.DefaultServeMux]; kiln never serves that mux, and
// nothing else must.
package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"runtime"
	rpprof "runtime/pprof"
	"strings"
	"sync"
	"time"
)

// DefaultAddr is where the admin listener listens unless told otherwise.
const DefaultAddr = "127.0.0.1:6060"

// MaxProfileSeconds is the longest CPU profile or trace the listener can
// take (?seconds=N); the write timeout is set just above it.
const MaxProfileSeconds = 300

// maxBody bounds request bodies (only /debug/pprof/symbol reads one).
const maxBody = 1 << 20

// shutdownGrace is how long in-flight requests may finish at shutdown; a
// profile still running then is cut off.
const shutdownGrace = 5 * time.Second

// Recorder is the flight recorder whose window GET /debug/flightrecorder
// serves; *monitor.FlightRecorder satisfies it.
type Recorder interface {
	WriteTo(w io.Writer) (int64, error)
}

// Options configures a [Server].
type Options struct {
	// Addr is the host:port to listen on (default [DefaultAddr]). A host
	// other than a loopback address (127.0.0.0/8, ::1) or "localhost",
	// including an empty one (":6060", every interface), needs Token.
	Addr string
	// Token, if set, must be sent by every request as "Authorization:
	// Bearer <Token>"; use a long random string. Printable ASCII without
	// spaces.
	Token string
	// Recorder serves GET /debug/flightrecorder; nil answers 404.
	Recorder Recorder
	// Metrics, if set, is served at GET /metrics (Prometheus), so that a
	// process without the API (kiln worker) can be scraped too.
	Metrics http.Handler
	// Logger receives the listener's start, failed authentications and
	// server errors (default: discard).
	Logger *slog.Logger
	// MutexFraction, when positive, is set with
	// runtime.SetMutexProfileFraction while the listener serves: on
	// average 1 in MutexFraction mutex contention events is recorded for
	// the mutex profile. Off by default (0): each sampled event costs a
	// stack walk, so prefer 100 or more in production.
	MutexFraction int
	// BlockRate, when positive, is set with runtime.SetBlockProfileRate
	// while the listener serves: about one blocking event per BlockRate
	// nanoseconds spent blocked is recorded for the block profile. Off by
	// default (0); 1 records every event and is expensive, 10000 (10µs)
	// or more is moderate.
	BlockRate int
}

// Server is the admin listener. Create it with [New], then call
// [Server.Serve] once.
type Server struct {
	addr          string
	token         *[sha256.Size]byte // nil: no authentication
	rec           Recorder
	metrics       http.Handler
	log           *slog.Logger
	mutexFraction int
	blockRate     int
	handler       http.Handler

	mu sync.Mutex
	ln net.Listener
}

// New checks opts and returns the listener, not yet listening. It refuses
// a non-loopback address without a token.
func New(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	loopback, err := isLoopback(opts.Addr)
	if err != nil {
		return nil, err
	}
	if opts.Token == "" && !loopback {
		return nil, fmt.Errorf("admin: %s is not a loopback address: the admin listener serves profiles and traces, so on any other address it needs an admin token", opts.Addr)
	}
	for i := 0; i < len(opts.Token); i++ {
		if c := opts.Token[i]; c < '!' || c > '~' {
			return nil, errors.New("admin: the admin token must be printable ASCII without spaces")
		}
	}
	if opts.MutexFraction < 0 || opts.BlockRate < 0 {
		return nil, errors.New("admin: the mutex fraction and block rate must not be negative")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		addr:          opts.Addr,
		rec:           opts.Recorder,
		metrics:       opts.Metrics,
		log:           opts.Logger,
		mutexFraction: opts.MutexFraction,
		blockRate:     opts.BlockRate,
	}
	if opts.Token != "" {
		sum := sha256.Sum256([]byte(opts.Token))
		s.token = &sum
	}
	s.handler = s.routes()
	return s, nil
}

// isLoopback reports whether addr's host is a loopback IP or "localhost";
// an empty host means every interface.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("admin: address %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false, nil // a host name other than localhost, or empty
	}
	return ip.Unmap().IsLoopback(), nil
}

// routes returns the admin mux behind the body limit and authentication.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /debug/{$}", s.index)
	// Index also serves the named profiles: /debug/pprof/heap, goroutine,
	// allocs, mutex, block, threadcreate.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/heap", s.heap)
	mux.HandleFunc("GET /debug/flightrecorder", s.flightRecorder)
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics)
	}
	var h http.Handler = mux
	h = s.authenticate(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h.ServeHTTP(w, r)
	})
}

// Handler returns the admin routes, authentication included, for serving
// elsewhere or testing.
func (s *Server) Handler() http.Handler { return s.handler }

// authenticate requires the bearer token on every request when one is
// configured. Tokens are compared as SHA-256 digests in constant time, so
// neither content nor length leaks through timing.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.token == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
		ok := strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(sum[:], s.token[:]) == 1
		if !ok {
			s.log.Warn("admin request without a valid token", "remote_addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="kiln-admin"`)
			http.Error(w, "401 unauthorized: send Authorization: Bearer <admin token>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

const indexText = `kiln admin

/debug/pprof/                   profiles index (HTML)
/debug/pprof/profile?seconds=N  CPU profile (default 30s, at most %d)
/debug/pprof/trace?seconds=N    execution trace (default 1s, at most %d)
/debug/pprof/heap               heap profile (?gc=1 to collect first)
/debug/pprof/allocs             allocations since start
/debug/pprof/goroutine          goroutines (?debug=1 grouped, ?debug=2 full)
/debug/pprof/mutex              mutex contention (mutex fraction: %d; 0 = off)
/debug/pprof/block              blocking (block rate: %d; 0 = off)
/debug/pprof/threadcreate       thread creation
/debug/pprof/cmdline            command line
/debug/pprof/symbol             symbol lookup
/debug/heap                     heap snapshot download (forces a GC first)
/debug/flightrecorder           flight recorder's recent trace (go tool trace)
/metrics                        Prometheus metrics (when enabled)
`

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	fmt.Fprintf(w, indexText, MaxProfileSeconds, MaxProfileSeconds, s.mutexFraction, s.blockRate)
}

// heap serves a heap profile (gzipped pprof protobuf) as a download. It
// forces a garbage collection first, so that the profile shows the live
// heap as of now rather than as of the last GC; a GC costs CPU and a
// short pause.
func (s *Server) heap(w http.ResponseWriter, _ *http.Request) {
	runtime.GC()
	var buf bytes.Buffer
	if err := rpprof.Lookup("heap").WriteTo(&buf, 0); err != nil {
		s.log.Error("admin heap profile", "err", err)
		http.Error(w, "500 internal error: heap profile: "+err.Error(), http.StatusInternalServerError)
		return
	}
	download(w, "heap-"+stamp()+".pb.gz", buf.Bytes())
}

// flightRecorder serves the recorder's current window as a trace file.
func (s *Server) flightRecorder(w http.ResponseWriter, _ *http.Request) {
	if s.rec == nil {
		http.Error(w, "404 not found: no flight recorder is running (start kiln with a trace directory)", http.StatusNotFound)
		return
	}
	// Buffered, so that a failure is an error status rather than a cut
	// download.
	var buf bytes.Buffer
	if _, err := s.rec.WriteTo(&buf); err != nil {
		s.log.Warn("admin flight recorder dump", "err", err)
		http.Error(w, "503 service unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	download(w, "flightrecorder-"+stamp()+".trace", buf.Bytes())
}

func download(w http.ResponseWriter, name string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// stamp is the current UTC time for download names.
func stamp() string { return time.Now().UTC().Format("20060102T150405Z") }

// Listen binds the address, if not done yet, so that a caller learns of a
// taken port before serving and [Server.Addr] reports the bound port.
// Without a token it refuses to keep a listener that resolved to a
// non-loopback address ("localhost" mapped elsewhere).
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("admin: listen: %w", err)
	}
	if s.token == nil {
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().Unmap().IsLoopback() {
			_ = ln.Close()
			return fmt.Errorf("admin: %s resolved to %s, which is not a loopback address; set an admin token", s.addr, ln.Addr())
		}
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address after [Server.Listen] (or once Serve
// listens), else the configured one.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// httpServer returns the server with timeouts: headers within 5s, the
// request within 30s, the response within MaxProfileSeconds+30s (CPU
// profiles and traces take as long as asked), idle connections closed
// after 2m.
func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      (MaxProfileSeconds + 30) * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// Serve listens (see [Server.Listen]) and serves until ctx is done, then
// shuts down, letting requests in flight finish for a few seconds. While
// it serves, the mutex and block profile rates of the options are in
// force; they are reset when it returns. It returns nil after a shutdown
// caused by ctx.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if s.mutexFraction > 0 {
		prev := runtime.SetMutexProfileFraction(s.mutexFraction)
		defer runtime.SetMutexProfileFraction(prev)
	}
	if s.blockRate > 0 {
		runtime.SetBlockProfileRate(s.blockRate)
		defer runtime.SetBlockProfileRate(0)
	}
	srv := s.httpServer()
	s.log.Info("admin listener", "addr", ln.Addr().String(), "token", s.token != nil,
		"mutex_fraction", s.mutexFraction, "block_rate", s.blockRate)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", err)
	}
	return nil
}
