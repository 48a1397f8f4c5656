package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/kilnhq/kiln/internal/cpupool"
	"github.com/kilnhq/kiln/internal/testutil"
)

func TestFibonacciValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "0"}, {1, "1"}, {2, "1"}, {10, "55"}, {35, "9227465"}, {36, "14930352"},
		{90, "2880067194370816120"},
	} {
		r := e.Do("GET", "/api/v1/compute/fibonacci?n="+strconv.Itoa(tc.n), "")
		if r.Status != 200 || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("n=%d: %d %s", tc.n, r.Status, r.Body)
		}
		var got struct {
			N     *int     `json:"n"`
			Value string   `json:"value"`
			MS    *float64 `json:"ms"`
		}
		if err := json.Unmarshal(r.Body, &got); err != nil {
			t.Fatal(err)
		}
		if got.N == nil || *got.N != tc.n || got.Value != tc.want || got.MS == nil || *got.MS < 0 {
			t.Errorf("n=%d: %s, want value %s", tc.n, r.Body, tc.want)
		}
	}
}

// TestFibNaiveAndIterativeAgree checks the two methods on the range both
// can compute quickly, so switching at naiveFibMax changes nothing.
func TestFibNaiveAndIterativeAgree(t *testing.T) {
	t.Parallel()
	var a, b uint64 = 0, 1
	for n := range 26 {
		if got := fibNaive(n); got != a {
			t.Fatalf("fibNaive(%d) = %d, want %d", n, got, a)
		}
		a, b = b, a+b
	}
}

func TestFibonacciBadN(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, q := range []string{"?n=-1", "?n=91", "?n=abc", "", "?m=3", "?n=", "?n=1&n=2", "?n=1.5", "?n=99999999999999999999"} {
		p := testutil.ProblemOf(t, e.Do("GET", "/api/v1/compute/fibonacci"+q, ""), 400)
		if p.Code != string(CodeInvalid) || len(p.Errors) != 1 || p.Errors[0].Field != "n" {
			t.Errorf("%q: %+v", q, p)
		}
	}
}

// TestFibonacciSaturated holds the API's only CPU worker with a task
// submitted straight to the pool: a Fibonacci request is then shed with
// 503 and Retry-After, while routes that need no CPU worker still answer.
func TestFibonacciSaturated(t *testing.T) {
	t.Parallel()
	pool := cpupool.New(1, 0)
	started, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		_, err := cpupool.Do(context.Background(), pool, func() int {
			close(started)
			<-release
			return 0
		})
		held <- err
	}()
	<-started
	defer func() {
		close(release)
		if err := <-held; err != nil {
			t.Error(err)
		}
	}()
	e := newEnv(t, func(a *API) { a.cpu = pool })

	r := e.Do("GET", "/api/v1/compute/fibonacci?n=10", "")
	p := testutil.ProblemOf(t, r, 503)
	if p.Code != string(CodeUnavailable) {
		t.Errorf("code %s", p.Code)
	}
	if got := r.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if s := pool.Stats(); s.Rejected != 1 {
		t.Errorf("pool stats %+v, want 1 rejected", s)
	}
	if r := e.Do("GET", "/api/v1/kinds", ""); r.Status != 200 {
		t.Errorf("GET /api/v1/kinds while the CPU pool is saturated: %d %s", r.Status, r.Body)
	}
}

// TestRetryAfterOnlyOn503 checks that RetryAfter rounds up to whole
// seconds and is sent with a 503 only.
func TestRetryAfterOnlyOn503(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{&Error{Code: CodeUnavailable, RetryAfter: 1500e6}, "2"},
		{&Error{Code: CodeUnavailable}, ""},
		{&Error{Code: CodeInvalid, RetryAfter: 1e9}, ""},
	} {
		w := httptest.NewRecorder()
		WriteError(w, httptest.NewRequest("GET", "/api/v1/x", nil), tc.err)
		if got := w.Header().Get("Retry-After"); got != tc.want {
			t.Errorf("%+v: Retry-After %q, want %q", tc.err, got, tc.want)
		}
	}
}

// FuzzFibonacciN drives the n parser with any query string: it must never
// panic, accept only 0..maxFibN, and refuse with a 400, never a 5xx
// (the only 5xx of the route is the pool's 503, which needs no parsing).
func FuzzFibonacciN(f *testing.F) {
	for _, s := range []string{
		"n=0", "n=1", "n=35", "n=36", "n=90", "n=91", "n=-1", "n=abc", "", "n=", "n=1&n=2", "n=+5",
		"n=007", "n=1e3", "n=99999999999999999999", "n=%00", "m=1", "n=-0", "n= 1", "n=0x10",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // answered with a 400 before the parser runs
		}
		n, err := parseFibN(q)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || StatusOf(e) != 400 {
				t.Fatalf("%q: %v", raw, err)
			}
			return
		}
		if n < 0 || n > maxFibN {
			t.Fatalf("%q parsed to %d", raw, n)
		}
	})
}

// BenchmarkFibonacciHandler measures one request for n=25 through the
// middleware and the pool, without the network.
func BenchmarkFibonacciHandler(b *testing.B) {
	a, err := New(Config{Jobs: newClient(b, make(chan struct{}))})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		w := httptest.NewRecorder()
		a.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/compute/fibonacci?n=25", nil))
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
