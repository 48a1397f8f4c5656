package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t      *testing.T
	client *queue.Client
	api    *API
	srv    *httptest.Server
	logs   *syncBuffer
	// release unblocks "block" jobs; releaseJobs closes it once.
	release     chan struct{}
	releaseJobs func()
}

// newClient returns a started client on a fresh SQLite file with the
// kinds noop and block (which runs until release is closed or its
// context ends).
func newClient(t testing.TB, release chan struct{}) *queue.Client {
	t.Helper()
	d, err := sqlitedriver.Open(filepath.Join(t.TempDir(), "kiln.db"), sqlitedriver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	w := queue.NewWorkers()
	w.HandleFunc("noop", func(context.Context, *queue.Job) error { return nil })
	w.HandleFunc("block", func(ctx context.Context, _ *queue.Job) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	w.HandleFunc("video", func(context.Context, *queue.Job) error { return nil }, queue.WithUnavailable(errors.New("ffmpeg not found on PATH")))
	c, err := queue.New(queue.Config{
		Driver: d, Workers: w, Queues: map[string]queue.QueueConfig{"default": {MaxWorkers: 4}},
		PollInterval: 20 * time.Millisecond, CancelCheckInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
	return c
}

func newEnv(t *testing.T, extra ...func(*API)) *env {
	t.Helper()
	e := &env{t: t, logs: &syncBuffer{}, release: make(chan struct{})}
	var once sync.Once
	e.releaseJobs = func() { once.Do(func() { close(e.release) }) }
	e.client = newClient(t, e.release)
	// Registered after the client's cleanup, so it runs first: the client
	// then stops without waiting for blocked jobs.
	t.Cleanup(e.releaseJobs)
	a, err := New(Config{Jobs: e.client, Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), BodyLimit: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range extra {
		f(a)
	}
	e.api = a
	e.srv = httptest.NewServer(a)
	t.Cleanup(e.srv.Close)
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// do sends a request; a non-empty body is sent as application/json
// unless header sets a Content-Type.
func (e *env) do(method, path, body string, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// problemOf checks that r is a problem with status and returns it.
func problemOf(t *testing.T, r response, status int) problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem %q: %v", r.body, err)
	}
	if p.Status != status || p.Title == "" || p.Type == "" || p.Detail == "" || p.Instance == "" {
		t.Fatalf("incomplete problem: %+v", p)
	}
	if p.RequestID == "" || p.RequestID != r.header.Get(RequestIDHeader) {
		t.Fatalf("problem request id %q, header %q", p.RequestID, r.header.Get(RequestIDHeader))
	}
	return p
}

func fields(p problem) []string {
	var out []string
	for _, f := range p.Errors {
		out = append(out, f.Field)
	}
	return out
}

func decodeJob(t *testing.T, r response) jobResponse {
	t.Helper()
	var j jobResponse
	if err := json.Unmarshal(r.body, &j); err != nil {
		t.Fatalf("job %q: %v", r.body, err)
	}
	return j
}

// waitState polls the job until it is in state.
func (e *env) waitState(id string, state queue.JobState) jobResponse {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.do("GET", "/api/v1/jobs/"+id, "")
		j := decodeJob(e.t, r)
		if j.State == state {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s is %s, want %s", id, j.State, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestErrorTableCoversEveryCode(t *testing.T) {
	for _, c := range []Code{CodeInvalid, CodeValidation, CodeNotFound, CodeMethodNotAllowed, CodeConflict, CodeTooLarge, CodeUnsupportedMedia, CodeUnavailable, CodeInternal} {
		if _, ok := codeStatus[c]; !ok {
			t.Errorf("code %s has no status", c)
		}
	}
	for err, want := range map[error]int{
		queue.ErrNotFound: 404, queue.ErrWrongState: 409, queue.ErrInvalid: 422, queue.ErrUnknownKind: 422,
		queue.ErrStopped: 503, errors.New("disk on fire"): 500,
	} {
		if got := StatusOf(errors.Join(errors.New("ctx"), err)); got != want {
			t.Errorf("%v: status %d, want %d", err, got, want)
		}
	}
}
