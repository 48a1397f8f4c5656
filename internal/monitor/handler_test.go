package monitor

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// serve serves the API with m's module.
func serve(t testing.TB, m *Monitor) *httptest.Server {
	t.Helper()
	client := dbtest.SQLite(t).Client(t, queue.Config{}, false)
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: client, Modules: []httpapi.Module{m.Module()}}))(t)
	if bad := api.DocMismatches(); len(bad) > 0 {
		t.Fatalf("OpenAPI document: %v", bad)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

func get(t testing.TB, url string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode %s: %v", url, err)
	}
	return resp, body
}

func TestRuntimeRoute(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := New(Options{Now: clk.Now, Interval: 2 * time.Second})
	srv := serve(t, m)

	resp, body := get(t, srv.URL+"/api/v1/runtime")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" ||
		resp.Header.Get("Retry-After") != "2" || body["code"] != "unavailable" {
		t.Fatalf("before the first sample: %d %v %v", resp.StatusCode, resp.Header, body)
	}

	m.observe(m.read())
	clk.Advance(time.Second)
	m.observe(m.read())
	resp, body = get(t, srv.URL+"/api/v1/runtime")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	for _, k := range []string{"sched_latency_p50_ms", "sched_latency_p99_ms", "sched_latency_max_ms", "gc_pause_p99_ms", "gc_pause_max_ms",
		"heap_bytes", "heap_goal_bytes", "total_memory_bytes", "goroutines", "gc_cycles", "gomaxprocs", "memory_limit_bytes", "uptime_s", "window_s"} {
		if _, ok := body[k].(float64); !ok {
			t.Errorf("%s: %v", k, body[k])
		}
	}
	if body["sampled_at"] != clk.Now().Format(time.RFC3339Nano) || body["window_s"] != 1.0 || body["goroutines"].(float64) < 1 {
		t.Errorf("body %v", body)
	}

	resp, body = get(t, srv.URL+"/api/v1/runtime?verbose=1")
	if resp.StatusCode != http.StatusBadRequest || body["code"] != "invalid" {
		t.Errorf("unknown parameter: %d %v", resp.StatusCode, body)
	}
	resp, body = get(t, srv.URL+"/api/v1/runtime/extra")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("subpath: %d %v", resp.StatusCode, body)
	}
}

func TestRuntimeRouteDocumented(t *testing.T) {
	t.Parallel()
	client := dbtest.SQLite(t).Client(t, queue.Config{}, false)
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: client, Modules: []httpapi.Module{New(Options{}).Module()}}))(t)
	var doc struct {
		Paths map[string]map[string]struct {
			Scope     string                     `json:"x-kiln-scope"`
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Required   []string                   `json:"required"`
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(api.Doc(), &doc); err != nil {
		t.Fatal(err)
	}
	op, ok := doc.Paths["/api/v1/runtime"]["get"]
	if !ok || op.Scope != "read" || op.Responses["200"] == nil || op.Responses["503"] == nil {
		t.Fatalf("operation: %+v", op)
	}
	// The schema names every field the snapshot has, and no other.
	schema := doc.Components.Schemas["RuntimeSnapshot"]
	b, err := json.Marshal(Snapshot{})
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != len(schema.Properties) || len(fields) != len(schema.Required) {
		t.Errorf("snapshot has %d fields, schema %d properties and %d required", len(fields), len(schema.Properties), len(schema.Required))
	}
	for k := range fields {
		if schema.Properties[k] == nil {
			t.Errorf("schema lacks %s", k)
		}
	}
}

func FuzzRuntimeQuery(f *testing.F) {
	for _, q := range []string{"", "a=1", "%zz", "&&&", "x=%00;y", "limit=10&after=3"} {
		f.Add(q)
	}
	m := New(Options{})
	m.observe(m.read())
	srv := serve(f, m)
	f.Fuzz(func(t *testing.T, q string) {
		u, err := url.Parse(srv.URL + "/api/v1/runtime")
		if err != nil {
			t.Fatal(err)
		}
		u.RawQuery = q
		req, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			return // not a request a client could send
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("query %q: status %d", q, resp.StatusCode)
		}
	})
}

func FuzzWindowQuantiles(f *testing.F) {
	f.Add([]byte{0, 5, 0, 0, 1}, []byte{0, 9, 0, 2, 1}, uint8(5))
	f.Add([]byte{}, []byte{255, 255, 255}, uint8(3))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7}, []byte{0, 0, 0, 0, 0, 0, 0}, uint8(7))
	f.Fuzz(func(t *testing.T, prevCounts, curCounts []byte, n uint8) {
		// n buckets with boundaries -Inf, 0, 1, 2, ..., +Inf.
		n = max(n%16, 1)
		buckets := []float64{math.Inf(-1)}
		for i := range int(n) - 1 {
			buckets = append(buckets, float64(i))
		}
		buckets = append(buckets, math.Inf(1))
		mk := func(b []byte) *metrics.Float64Histogram {
			h := &metrics.Float64Histogram{Buckets: buckets, Counts: make([]uint64, n)}
			for i := range min(len(b), int(n)) {
				h.Counts[i] = uint64(b[i]) << 56 // large counts too
			}
			return h
		}
		q := windowQuantiles(mk(prevCounts), mk(curCounts))
		for _, v := range []float64{q.p50, q.p99, q.max} {
			if v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
				t.Fatalf("quantiles %+v", q)
			}
		}
		if q.p50 > q.p99 || q.p99 > q.max {
			t.Fatalf("quantiles out of order: %+v", q)
		}
	})
}
