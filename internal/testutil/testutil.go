// Package testutil holds what kiln's tests share: a settable [Clock], a
// [Logs] sink that reads back what was logged, a [Server] that answers
// HTTP requests with a [Response] each, the RFC 9457 [Problem] a client
// reads from a refusal, and [Eventually] for conditions that take time.
//
// It depends on no package of kiln, so that every package's tests,
// httpapi's included, can use it.
package testutil

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue/queuetest"
)

// Clock is a settable clock, safe for concurrent use: the engine's test
// clock. Pass its Now method where a clock is wanted.
type Clock = queuetest.Clock

// NewClock returns a clock that reads t until it is moved.
func NewClock(t time.Time) *Clock { return queuetest.NewClock(t) }

// Logs collects log lines, safe for concurrent writers and readers.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger returns a logger that writes JSON lines to l from level debug
// up.
func (l *Logs) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Records returns the JSON lines logged so far for which keep returns
// true (nil keeps every line).
func (l *Logs) Records(t testing.TB, keep func(map[string]any) bool) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(l.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if keep == nil || keep(m) {
			out = append(out, m)
		}
	}
	return out
}

// Message keeps the log records with message msg.
func Message(msg string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["msg"] == msg }
}

// Level keeps the log records of level (as slog writes it: "ERROR").
func Level(level string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["level"] == level }
}

// Server serves a handler over HTTP for the length of a test.
type Server struct {
	*httptest.Server
	t testing.TB
}

// Serve starts serving h; the server is closed when the test ends. Its
// client does not follow redirects: a test sees what the server answered.
func Serve(t testing.TB, h http.Handler) *Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	srv.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Server{Server: srv, t: t}
}

// Response is an answer, its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request to path (with its query) and returns the answer. A
// non-empty body is sent as application/json; header holds more headers
// as name, value pairs, which may set another Content-Type.
func (s *Server) Do(method, path, body string, header ...string) Response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return s.Send(req)
}

// Send sends req, whose URL may be a path on the server, and returns the
// answer.
func (s *Server) Send(req *http.Request) Response {
	s.t.Helper()
	if req.URL.Host == "" {
		u := *req.URL
		req = req.Clone(req.Context())
		req.URL, _ = req.URL.Parse(s.URL + u.String())
		req.Host = ""
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// JSON returns the body decoded as a JSON object.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	return Decode[map[string]any](t, r)
}

// Decode returns the body decoded as JSON into a T.
func Decode[T any](t testing.TB, r Response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("decode %d %s: %v", r.Status, r.Body, err)
	}
	return v
}

// FieldError is one bad field of a [Problem].
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Problem is an RFC 9457 problem as a client reads it.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	Instance  string       `json:"instance"`
	Code      string       `json:"code"`
	Errors    []FieldError `json:"errors"`
	RequestID string       `json:"request_id"`
}

// ProblemOf checks that r is a complete problem with status (its type,
// title, detail, instance and request id set, the id the one of the
// X-Request-ID header, and no other member) and returns it.
func ProblemOf(t testing.TB, r Response, status int) Problem {
	t.Helper()
	p := strict[Problem](t, r, status, "application/problem+json")
	if p.Status != status || p.Title == "" || p.Type == "" || p.Detail == "" || p.Instance == "" {
		t.Fatalf("incomplete problem: %+v", p)
	}
	if p.RequestID == "" || p.RequestID != r.Header.Get("X-Request-ID") {
		t.Fatalf("problem request id %q, header %q", p.RequestID, r.Header.Get("X-Request-ID"))
	}
	return p
}

// Fields returns the names of the problem's bad fields, sorted.
func (p Problem) Fields() []string {
	out := make([]string, 0, len(p.Errors))
	for _, f := range p.Errors {
		out = append(out, f.Field)
	}
	slices.Sort(out)
	return out
}

// Eventually polls cond until it holds, failing t after 30 seconds.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Page checks that r is a 200 page of a list answer, {name: [...],
// "next": cursor or null}, and returns its items and next cursor.
func Page[T any](t testing.TB, r Response, name string) ([]T, *string) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	page := Decode[map[string]json.RawMessage](t, r)
	var items []T
	var next *string
	if err := json.Unmarshal(page[name], &items); err != nil || items == nil || len(page) != 2 {
		t.Fatalf("list: %s is not {%q: [...], \"next\": ...}: %v", r.Body, name, err)
	}
	if err := json.Unmarshal(page["next"], &next); err != nil {
		t.Fatalf("list: next in %s: %v", r.Body, err)
	}
	return items, next
}

// Must returns v, or fails the test given to the function it returns
// when err is not nil: svc := testutil.Must(NewService(db, o))(t).
func Must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// JSONOf checks that r is application/json with status and returns its
// body decoded strictly (no member T lacks) into a T.
func JSONOf[T any](t testing.TB, r Response, status int) T {
	t.Helper()
	return strict[T](t, r, status, "application/json")
}

// strict checks r's status and Content-Type and decodes its body into a
// T, refusing members T lacks.
func strict[T any](t testing.TB, r Response, status int, contentType string) T {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != contentType {
		t.Fatalf("Content-Type %q, want %s", ct, contentType)
	}
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", r.Body, err)
	}
	return v
}

// FuzzBody fuzzes read, which reads the JSON body of a method request to
// path (decoding and validating it), starting from seeds: it must not
// panic, and what it refuses must be, by status (which tells the status
// an error is answered with), a 400 or a 422, never a server error.
func FuzzBody(f *testing.F, seeds []string, method, path string, status func(error) int, read func(t *testing.T, r *http.Request) error) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if err := read(t, r); err != nil {
			if s := status(err); s != http.StatusBadRequest && s != http.StatusUnprocessableEntity {
				t.Fatalf("status %d for %q: %v", s, body, err)
			}
		}
	})
}
