package app_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/app"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// serveNoAuth serves the whole API on e without authentication, its logs
// in logs, and returns it with the engine client it enqueues with.
func serveNoAuth(t *testing.T, e *dbtest.Env, logs *testutil.Logs) (*app.App, *testutil.Server) {
	t.Helper()
	base := app.NewBase(e.DB, nil, nil, nil)
	w := queue.NewWorkers()
	if err := app.RegisterKinds(w, base); err != nil {
		t.Fatal(err)
	}
	c := e.Client(t, queue.Config{Workers: w, PollInterval: 20 * time.Millisecond}, false)
	a, err := app.New(app.Config{Jobs: c, Base: base, NoAuth: true, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a, testutil.Serve(t, a.API)
}

// TestListQueries sends the same good and bad queries to every list
// route and expects the same answer from each: one rule for limit, after,
// unknown parameters and parameters given twice.
func TestListQueries(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		_, srv := serveNoAuth(t, de, &testutil.Logs{})
		if r := srv.Do("POST", "/api/v1/webhooks", `{"url":"https://example.com/hook"}`); r.Status != http.StatusCreated {
			t.Fatalf("create webhook: %d %s", r.Status, r.Body)
		}
		routes := map[string]string{ // path → the list's name in the answer
			"/api/v1/users":                 "users",
			"/api/v1/orders":                "orders",
			"/api/v1/images":                "images",
			"/api/v1/webhooks":              "webhooks",
			"/api/v1/webhooks/1/deliveries": "deliveries",
			"/api/v1/jobs":                  "jobs",
		}
		for _, tc := range []struct {
			query  string
			status int
			fields []string // the problem's fields; nil for a 200
		}{
			{"limit=%2B10", 400, []string{"limit"}},
			{"limit=%2010", 400, []string{"limit"}},
			{"limit=0", 400, []string{"limit"}},
			{"limit=abc", 400, []string{"limit"}},
			{"limit=100000", 400, []string{"limit"}},
			{"after=garbage", 400, []string{"after"}},
			{"after=-1", 400, []string{"after"}},
			{"bogus=1", 400, []string{"bogus"}},
			{"bogus=1&zap=2", 400, []string{"bogus", "zap"}},
			{"limit=5&limit=6", 400, []string{"limit"}},
			{"after=5&after=5", 400, []string{"after"}},
			{"limit=0&bogus=1", 400, []string{"bogus", "limit"}},
			{"%zz", 400, nil},
			{"", 200, nil},
			{"limit=5&after=999999", 200, nil},
		} {
			for path, name := range routes {
				r := srv.Do("GET", path+"?"+tc.query, "")
				if tc.status == http.StatusOK {
					page := testutil.Decode[map[string]any](t, r)
					if _, ok := page[name].([]any); r.Status != 200 || !ok || len(page) != 2 {
						t.Errorf("%s?%s: %d %s", path, tc.query, r.Status, r.Body)
					}
					continue
				}
				p := testutil.ProblemOf(t, r, tc.status)
				if p.Code != "invalid" || !slices.Equal(p.Fields(), tc.fields) {
					t.Errorf("%s?%s: code %s, fields %v, want invalid %v", path, tc.query, p.Code, p.Fields(), tc.fields)
				}
				for _, f := range tc.fields {
					if !strings.Contains(p.Detail, `"`+f+`"`) {
						t.Errorf("%s?%s: detail %q does not name %s", path, tc.query, p.Detail, f)
					}
				}
			}
		}
	})
}

// TestPathIDs sends ids that are not positive decimal integers to every
// route with an {id}, whatever its method, and expects the same 400
// naming the parameter from each; the largest id is a 404 from each
// route that reads a record.
func TestPathIDs(t *testing.T) {
	t.Parallel()
	a, srv := serveNoAuth(t, dbtest.SQLite(t), &testutil.Logs{})
	for _, pattern := range a.API.Patterns() {
		method, path, _ := strings.Cut(pattern, " ")
		if !strings.Contains(path, "{id}") {
			continue
		}
		path = strings.ReplaceAll(path, "{size}", "64")
		for _, id := range []string{"abc", "0", "-1", "+1", "1.5", "1e3", "9223372036854775808", "99999999999999999999", "%20"} {
			p := testutil.ProblemOf(t, srv.Do(method, strings.ReplaceAll(path, "{id}", id), "{}"), http.StatusBadRequest)
			if !slices.Equal(p.Fields(), []string{"id"}) {
				t.Errorf("%s with id %s: %+v", pattern, id, p)
			}
		}
		if method == "GET" {
			testutil.ProblemOf(t, srv.Do(method, strings.ReplaceAll(path, "{id}", "9223372036854775807"), ""), http.StatusNotFound)
		}
	}
}
