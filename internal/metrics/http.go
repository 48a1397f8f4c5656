package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Unmatched is the route label of requests that matched no route.
const Unmatched = "unmatched"

// httpBuckets span a cached read (0.5 ms) to a request that is about to
// time out (10 s).
var httpBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// requestKey is a request's method label, route pattern as given, and
// status: the label values are derived once per key, off the hot path.
type requestKey struct {
	method, pattern string
	status          int
}

func (m *Metrics) initHTTP() {
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Subsystem: "http",
		Name:      "request_duration_seconds",
		Help:      "Time to serve HTTP API requests, by method, route pattern (never the raw path; \"unmatched\" for no route) and status code.",
		Buckets:   httpBuckets,
	}, []string{"method", "route", "status"})
	m.reqCache.make = func(k requestKey) prometheus.Observer {
		return m.requests.WithLabelValues(k.method, labelValue(routeLabel(k.pattern)), strconv.Itoa(k.status))
	}
}

// RequestStarted counts a request in flight; call [Metrics.RequestDone]
// when it ends.
func (m *Metrics) RequestStarted() { m.inFlight.Add(1) }

// RequestDone ends a request counted by [Metrics.RequestStarted] and
// records its duration. route is the pattern the mux matched (r.Pattern,
// as "GET /api/v1/users/{id}"; only its path is kept, since the method
// is a label of its own), or "" or "unmatched" when none did: never the
// request's raw path. Methods other than the standard ones are recorded
// as "other", and a status of 0 (nothing written) as 200.
func (m *Metrics) RequestDone(method, route string, status int, d time.Duration) {
	m.inFlight.Add(-1)
	if status == 0 {
		status = http.StatusOK
	}
	k := requestKey{method: methodLabel(method), pattern: route, status: status}
	m.reqCache.get(k).Observe(d.Seconds())
}

// standardMethods are the method labels; any other method is "other".
var standardMethods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

// methodLabel bounds the method label to the standard methods. It returns
// the constant, not method, so that the cache keeps no request's string.
func methodLabel(method string) string {
	for _, m := range standardMethods {
		if m == method {
			return m
		}
	}
	return "other"
}

// routeLabel returns the path of a ServeMux pattern ("[METHOD ][HOST]/PATH"),
// or [Unmatched] when there is none.
func routeLabel(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 && strings.IndexByte(pattern[:i], '/') < 0 {
		pattern = pattern[i+1:]
		for pattern != "" && (pattern[0] == ' ' || pattern[0] == '\t') {
			pattern = pattern[1:]
		}
	}
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return Unmatched
}

// labelValue makes s acceptable as a label value, which must be UTF-8.
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
