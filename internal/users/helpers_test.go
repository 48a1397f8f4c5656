package users

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/queue"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env serves the users module over HTTP on a fresh database.
type env struct {
	t     *testing.T
	db    *database.DB
	api   *httpapi.API
	srv   *httptest.Server
	clock *clock
}

// start is the test clock's first reading: not in UTC and with
// nanoseconds, which the service must drop.
var start = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))

func newEnv(t *testing.T, d *dbtest.Env) *env {
	t.Helper()
	c := &clock{t: start}
	h := NewHandler(NewService(NewStore(d.DB), c.now))
	a, err := httpapi.New(httpapi.Config{Jobs: d.Client(t, queue.Config{}, false), Modules: []httpapi.Module{h}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &env{t: t, db: d.DB, api: a, srv: srv, clock: c}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; a non-empty body is sent as application/json
// unless contentType is given.
func (e *env) do(method, path, body string, contentType ...string) response {
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
	if len(contentType) > 0 {
		req.Header.Set("Content-Type", contentType[0])
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

// user is a user as a client decodes it.
type user struct {
	ID        int64  `json:"id"`
	Email     string `json:"email"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

// decodeUser checks that r is a user with status and returns it.
func decodeUser(t *testing.T, r response, status int) user {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var u user
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&u); err != nil {
		t.Fatalf("user %q: %v", r.body, err)
	}
	return u
}

// create creates a user and returns it.
func (e *env) create(email, name string) user {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "name": name})
	return decodeUser(e.t, e.do("POST", "/api/v1/users", string(b)), http.StatusCreated)
}

// problem is an RFC 9457 problem as a client decodes it.
type problem struct {
	Type      string               `json:"type"`
	Title     string               `json:"title"`
	Status    int                  `json:"status"`
	Detail    string               `json:"detail"`
	Instance  string               `json:"instance"`
	Code      string               `json:"code"`
	Errors    []httpapi.FieldError `json:"errors"`
	RequestID string               `json:"request_id"`
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
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem %q: %v", r.body, err)
	}
	if p.Status != status || p.Detail == "" || p.RequestID == "" {
		t.Fatalf("incomplete problem: %+v", p)
	}
	return p
}

// fieldsOf returns the sorted names of a problem's fields.
func fieldsOf(p problem) []string {
	var out []string
	for _, f := range p.Errors {
		out = append(out, f.Field)
	}
	slices.Sort(out)
	return out
}
