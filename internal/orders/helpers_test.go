package orders

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/users"
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

// syncBuffer collects the API's log lines.
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

// start is the test clock's first reading: not in UTC and with
// nanoseconds, which the service must drop.
var start = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))

// env serves the orders and users modules over HTTP on a fresh database.
type env struct {
	t      *testing.T
	db     *database.DB
	client *queue.Client
	api    *httpapi.API
	srv    *httptest.Server
	clock  *clock
	logs   *syncBuffer
}

type options struct {
	// work starts the client on the default queue with the order kinds.
	work bool
	// noKinds leaves the order kinds unregistered.
	noKinds bool
}

func newEnv(t *testing.T, d *dbtest.Env, o options) *env {
	t.Helper()
	w := queue.NewWorkers()
	if !o.noKinds {
		RegisterKinds(w, d.DB)
	}
	cfg := queue.Config{Workers: w, PollInterval: 20 * time.Millisecond}
	if o.work {
		cfg.Queues = map[string]queue.QueueConfig{queue.DefaultQueue: {MaxWorkers: 2}}
	}
	e := &env{t: t, db: d.DB, client: d.Client(t, cfg, o.work), clock: &clock{t: start}, logs: &syncBuffer{}}
	svc := NewService(d.DB, NewStore(d.DB), e.client, e.clock.now)
	a, err := httpapi.New(httpapi.Config{
		Jobs:    e.client,
		Logger:  slog.New(slog.NewJSONHandler(e.logs, nil)),
		Modules: []httpapi.Module{NewHandler(svc), users.NewHandler(users.NewService(users.NewStore(d.DB), nil))},
	})
	if err != nil {
		t.Fatal(err)
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

// do sends a request; a non-empty body is sent as application/json.
func (e *env) do(method, path, body string) response {
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

// user creates a user and returns its id.
func (e *env) user(email string) int64 {
	e.t.Helper()
	r := e.do("POST", "/api/v1/users", `{"email":"`+email+`","name":"Test"}`)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create user: %d %s", r.status, r.body)
	}
	var u struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(r.body, &u); err != nil {
		e.t.Fatal(err)
	}
	return u.ID
}

// order is an order as a client decodes it.
type order struct {
	ID           int64  `json:"id"`
	UserID       int64  `json:"user_id"`
	Status       string `json:"status"`
	AmountCents  int64  `json:"amount_cents"`
	Currency     string `json:"currency"`
	Note         string `json:"note"`
	CreatedAt    string `json:"created_at"`
	UpdatedAt    string `json:"updated_at"`
	ConfirmedAt  string `json:"confirmed_at"` // null reads as ""
	ConfirmJobID int64  `json:"confirm_job_id"`
}

// decodeOrder checks that r is an order with status and returns it.
func decodeOrder(t *testing.T, r response, status int) order {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var o order
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		t.Fatalf("order %q: %v", r.body, err)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(r.body, &raw)
	if _, ok := raw["confirmed_at"]; !ok {
		t.Fatalf("order %s lacks confirmed_at", r.body)
	}
	return o
}

// create creates an order over HTTP and returns it.
func (e *env) create(body string) order {
	e.t.Helper()
	return decodeOrder(e.t, e.do("POST", "/api/v1/orders", body), http.StatusCreated)
}

// get fetches an order over HTTP.
func (e *env) get(id int64) order {
	e.t.Helper()
	return decodeOrder(e.t, e.do("GET", "/api/v1/orders/"+itoa(id), ""), http.StatusOK)
}

// problem is an RFC 9457 problem as a client decodes it.
type problem struct {
	Status    int                  `json:"status"`
	Detail    string               `json:"detail"`
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

// count runs a SELECT count(*) query.
func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.W.QueryRowContext(context.Background(), e.db.Rebind(query), args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// confirmJobs returns every order.confirm job.
func (e *env) confirmJobs() []*queue.Job {
	e.t.Helper()
	jobs, err := e.client.List(context.Background(), queue.ListParams{Kinds: []string{KindConfirm}, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return jobs
}

// exec runs statements one by one.
func (e *env) exec(stmts ...string) {
	e.t.Helper()
	for _, s := range stmts {
		if _, err := e.db.W.ExecContext(context.Background(), s); err != nil {
			e.t.Fatalf("%s: %v", s, err)
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
