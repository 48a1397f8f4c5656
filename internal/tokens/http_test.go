package tokens

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// TestAPIWithRealTokens serves the API with the service as its
// authenticator: a live token passes with its scope, a revoked or
// expired one is a 401.
func TestAPIWithRealTokens(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		clk := newClock()
		s := newService(t, e.DB, clk, Options{})
		api := testutil.Must(httpapi.New(httpapi.Config{Jobs: e.Client(t, queue.Config{}, false), Auth: s}))(t)
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		call := func(method, path, token string) (int, http.Header) {
			t.Helper()
			req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode >= 400 {
				var p struct{ Detail string }
				if err := json.Unmarshal(b, &p); err != nil || p.Detail == "" {
					t.Errorf("%s %s: %d without a problem body: %s", method, path, resp.StatusCode, b)
				}
			}
			return resp.StatusCode, resp.Header
		}

		reader, _ := mustCreate(t, s, "reader", httpapi.ScopeRead, time.Hour)
		admin, adminInfo := mustCreate(t, s, "admin", httpapi.ScopeAdmin, 0)
		if code, _ := call("GET", "/api/v1/jobs", reader); code != 200 {
			t.Errorf("read token on GET: %d", code)
		}
		if code, _ := call("POST", "/api/v1/queues/default/pause", reader); code != 403 {
			t.Errorf("read token on pause: %d", code)
		}
		if code, _ := call("POST", "/api/v1/queues/default/pause", admin); code != 200 {
			t.Errorf("admin token on pause: %d", code)
		}
		if code, h := call("GET", "/api/v1/jobs", admin[:len(admin)-1]+"x"); code != 401 || h.Get("WWW-Authenticate") == "" {
			t.Errorf("mangled token: %d", code)
		}
		clk.Advance(time.Hour)
		if code, _ := call("GET", "/api/v1/jobs", reader); code != 401 {
			t.Errorf("expired token: %d", code)
		}
		if err := s.Revoke(ctx, adminInfo.ID); err != nil {
			t.Fatal(err)
		}
		if code, _ := call("GET", "/api/v1/jobs", admin); code != 401 {
			t.Errorf("revoked token: %d", code)
		}
	})
}
