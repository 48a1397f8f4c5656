package orders

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/internal/users"
	"github.com/kilnhq/kiln/queue"
)

// start is the test clock's first reading: not in UTC and with
// nanoseconds, which the service must drop.
var start = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))

// env serves the orders and users modules over HTTP on a fresh database.
type env struct {
	*testutil.Server
	t      *testing.T
	de     *dbtest.Env
	db     *database.DB
	client *queue.Client
	api    *httpapi.API
	clock  *testutil.Clock
	logs   *testutil.Logs
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
	e := &env{t: t, de: d, db: d.DB, client: d.Client(t, cfg, o.work), clock: testutil.NewClock(start), logs: &testutil.Logs{}}
	svc := testutil.Must(NewService(d.DB, e.client, Options{Now: e.clock.Now}))(t)
	us := testutil.Must(users.NewService(d.DB, users.Options{}))(t)
	e.api = testutil.Must(httpapi.New(httpapi.Config{
		Jobs:    e.client,
		Logger:  e.logs.Logger(),
		Modules: []httpapi.Module{NewHandler(svc), users.NewHandler(us)},
	}))(t)
	e.Server = testutil.Serve(t, e.api)
	return e
}

// user creates a user and returns its id.
func (e *env) user(email string) int64 {
	e.t.Helper()
	r := e.Do("POST", "/api/v1/users", `{"email":"`+email+`","name":"Test"}`)
	if r.Status != http.StatusCreated {
		e.t.Fatalf("create user: %d %s", r.Status, r.Body)
	}
	var u struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &u); err != nil {
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
func decodeOrder(t *testing.T, r testutil.Response, status int) order {
	t.Helper()
	o := testutil.JSONOf[order](t, r, status)
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(r.Body, &raw)
	if _, ok := raw["confirmed_at"]; !ok {
		t.Fatalf("order %s lacks confirmed_at", r.Body)
	}
	return o
}

// create creates an order over HTTP and returns it.
func (e *env) create(body string) order {
	e.t.Helper()
	return decodeOrder(e.t, e.Do("POST", "/api/v1/orders", body), http.StatusCreated)
}

// get fetches an order over HTTP.
func (e *env) get(id int64) order {
	e.t.Helper()
	return decodeOrder(e.t, e.Do("GET", "/api/v1/orders/"+itoa(id), ""), http.StatusOK)
}

// count runs a SELECT count(*) query.
func (e *env) count(query string, args ...any) int { return e.de.Count(e.t, query, args...) }

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
		e.de.Exec(e.t, s)
	}
}

// dropTrigger drops trigger name on table, in the words of e's dialect.
func (e *env) dropTrigger(name, table string) {
	e.t.Helper()
	switch e.db.Dialect {
	case database.SQLite:
		e.exec(`DROP TRIGGER ` + name)
	case database.Postgres:
		e.exec(`DROP TRIGGER ` + name + ` ON ` + table)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
