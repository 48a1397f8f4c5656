package metrics

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// FuzzRouteLabel checks that the route label is the path of the pattern,
// or "unmatched", and never panics.
func FuzzRouteLabel(f *testing.F) {
	for _, s := range []string{
		"GET /api/v1/users/{id}", "/api/v1/jobs", "", "unmatched", "GET", "GET ",
		"POST example.com/x", "  /a", "GET\t/a", "/", "GET /{$}", "\xff /\xfe",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		got := routeLabel(pattern)
		if got != Unmatched && (!strings.HasPrefix(got, "/") || !strings.HasSuffix(pattern, got)) {
			t.Fatalf("routeLabel(%q) = %q: not a path ending the pattern", pattern, got)
		}
		if got == Unmatched && strings.Contains(pattern, "/") {
			t.Fatalf("routeLabel(%q) = unmatched, though the pattern has a path", pattern)
		}
	})
}

// FuzzObserve records arbitrary requests and job events and scrapes with an
// arbitrary Accept header: no panic, and never a 5xx.
func FuzzObserve(f *testing.F) {
	f.Add("GET", "GET /api/v1/users/{id}", 200, "default", "noop", "completed", "")
	f.Add("BREW", "", 0, "", "", "", "application/openmetrics-text;version=1.0.0")
	f.Add("get", "\xff", -1, "\xfe", "k\x00", "new_event", "text/plain;q=0.1, */*;q=0")
	f.Add("POST", "POST /api/v1/orders", 999, "q", "k", "rescued", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	f.Add("DELETE", "/x/y", 500, "q", "k", "started", "application/openmetrics-text; version=0.0.1; charset=utf-8")
	m := New(Options{Logger: quiet})
	m.WatchQueues(staticQueues{})
	f.Fuzz(func(t *testing.T, method, route string, status int, q, kind, event, accept string) {
		m.RequestStarted()
		m.RequestDone(method, route, status, time.Millisecond)
		m.ObserveJobEvent(queue.Event{Kind: queue.EventKind(event), Job: &queue.Job{Queue: q, Kind: kind}, RunTime: time.Second})
		res, body := scrape(m.Handler(), accept)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("scrape with Accept %q: status %d: %s", accept, res.StatusCode, body)
		}
	})
}
