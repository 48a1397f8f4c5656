package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/app"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/metrics"
	"github.com/kilnhq/kiln/internal/monitor"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

type env struct {
	*testutil.Server
	t      *testing.T
	app    *app.App
	client *queue.Client
}

func newEnv(t *testing.T, e *dbtest.Env) *env {
	t.Helper()
	// As serve does: metrics first, so that the features register theirs.
	m := metrics.New(metrics.Options{})
	base := app.NewBase(e.DB, nil, m.Registry(), nil)
	w := queue.NewWorkers()
	if err := app.RegisterKinds(w, base); err != nil {
		t.Fatal(err)
	}
	c := e.Client(t, queue.Config{Workers: w, Queues: map[string]queue.QueueConfig{"default": {MaxWorkers: 4}}, PollInterval: 20 * time.Millisecond}, true)
	m.WatchQueues(c)
	a, err := app.New(app.Config{Jobs: c, Base: base, Metrics: m, Monitor: monitor.New(monitor.Options{}), Slow: monitor.NewSlowLog(monitor.SlowOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return &env{Server: testutil.Serve(t, a.API), t: t, app: a, client: c}
}

func (e *env) token(scope httpapi.Scope) string {
	e.t.Helper()
	tok, _, err := e.app.Tokens.Create(context.Background(), "test", scope, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// do sends a request with token (if any) and decodes a JSON answer into
// out (if not nil); it returns the answer and its body.
func (e *env) do(token, method, path, body string, out any, header ...string) (testutil.Response, []byte) {
	e.t.Helper()
	if token != "" {
		header = append(header, "Authorization", "Bearer "+token)
	}
	r := e.Do(method, path, body, header...)
	if out != nil && r.Status < 300 {
		if err := json.Unmarshal(r.Body, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, r.Body)
		}
	}
	return r, r.Body
}

// TestAssembledAPI checks the API as kiln serve builds it: the document
// matches the router, every route needs a token, and the features work
// together through it.
func TestAssembledAPI(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de)
		for _, m := range e.app.API.DocMismatches() {
			t.Error(m)
		}
		// Every versioned route refuses a request without a token, before
		// it looks at the path values or the body.
		for _, p := range e.app.API.Patterns() {
			method, path, _ := strings.Cut(p, " ")
			if !strings.HasPrefix(path, httpapi.Prefix) {
				continue
			}
			path = strings.NewReplacer("{id}", "1", "{name}", "default").Replace(path)
			resp, body := e.do("", method, path, "", nil)
			if resp.Status != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s without a token: %d %s", p, resp.Status, body)
			}
		}
		read, write, adminTok := e.token(httpapi.ScopeRead), e.token(httpapi.ScopeWrite), e.token(httpapi.ScopeAdmin)

		// A user and an order; the order's confirm job runs.
		var user struct {
			ID int64 `json:"id"`
		}
		if resp, body := e.do(write, "POST", "/api/v1/users", `{"email":"Ada@Example.com","name":"Ada"}`, &user); resp.Status != 201 {
			t.Fatalf("create user: %d %s", resp.Status, body)
		}
		if resp, _ := e.do(read, "POST", "/api/v1/users", `{"email":"b@example.com","name":"B"}`, nil); resp.Status != 403 {
			t.Errorf("create user with a read token: %d", resp.Status)
		}
		var order struct {
			ID           int64 `json:"id"`
			ConfirmJobID int64 `json:"confirm_job_id"`
		}
		body := `{"user_id":` + jsonInt(user.ID) + `,"amount_cents":1250,"currency":"EUR"}`
		resp, raw := e.do(write, "POST", "/api/v1/orders", body, &order, "Idempotency-Key", `"order-1"`)
		if resp.Status != 201 || order.ConfirmJobID == 0 {
			t.Fatalf("create order: %d %s", resp.Status, raw)
		}
		// The same key and body replays: no second order, no second job.
		resp2, raw2 := e.do(write, "POST", "/api/v1/orders", body, nil, "Idempotency-Key", `"order-1"`)
		if resp2.Status != 201 || resp2.Header.Get("Idempotent-Replayed") != "true" || string(raw2) != string(raw) {
			t.Errorf("replay: %d %q %s", resp2.Status, resp2.Header.Get("Idempotent-Replayed"), raw2)
		}
		var list struct {
			Orders []json.RawMessage `json:"orders"`
		}
		e.do(read, "GET", "/api/v1/orders", "", &list)
		if len(list.Orders) != 1 {
			t.Errorf("%d orders after a replayed create", len(list.Orders))
		}
		e.waitJob(read, order.ConfirmJobID)
		var got struct {
			Status string `json:"status"`
		}
		e.do(read, "GET", "/api/v1/orders/"+jsonInt(order.ID), "", &got)
		if got.Status != "confirmed" {
			t.Errorf("order status %q after its confirm job", got.Status)
		}

		// A report over it, polled through the job and downloaded.
		var rep struct {
			JobID  int64  `json:"job_id"`
			Report string `json:"report"`
		}
		resp, raw = e.do(write, "POST", "/api/v1/reports", `{"kind":"order_totals","group_by":"user"}`, &rep)
		if resp.Status != 202 || resp.Header.Get("Location") != "/api/v1/jobs/"+jsonInt(rep.JobID) {
			t.Fatalf("create report: %d %s %s", resp.Status, resp.Header.Get("Location"), raw)
		}
		e.waitJob(read, rep.JobID)
		resp, csv := e.do(read, "GET", rep.Report+"/download", "", nil)
		if resp.Status != 200 || !strings.Contains(string(csv), "ada@example.com,Ada,EUR,1,1250,12.50") {
			t.Errorf("report download: %d %s", resp.Status, csv)
		}

		// Deleting needs admin.
		if resp, _ := e.do(write, "DELETE", "/api/v1/orders/"+jsonInt(order.ID), "", nil); resp.Status != 403 {
			t.Errorf("delete with a write token: %d", resp.Status)
		}
		if resp, _ := e.do(adminTok, "DELETE", "/api/v1/orders/"+jsonInt(order.ID), "", nil); resp.Status != 204 {
			t.Errorf("delete with an admin token: %d", resp.Status)
		}
		// The runtime figures are served.
		var rt map[string]any
		if resp, b := e.do(read, "GET", "/api/v1/runtime", "", &rt); resp.Status != 200 && resp.Status != 503 {
			t.Errorf("runtime: %d %s", resp.Status, b)
		}
	})
}

func (e *env) waitJob(token string, id int64) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var j struct {
			State  string          `json:"state"`
			Errors json.RawMessage `json:"errors"`
		}
		e.do(token, "GET", "/api/v1/jobs/"+jsonInt(id), "", &j)
		if j.State == "completed" {
			return
		}
		if j.State == "failed" || j.State == "cancelled" || time.Now().After(deadline) {
			e.t.Fatalf("job %d: %s %s", id, j.State, j.Errors)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jsonInt(n int64) string { return strconv.FormatInt(n, 10) }
