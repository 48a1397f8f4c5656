package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kilnhq/kiln/internal/cpupool"
)

// maxFibN is the largest n GET /api/v1/compute/fibonacci accepts.
// Fibonacci(93) is the last that fits in a uint64; the cap is kept a
// little lower, at 90, for a round, documented bound.
const maxFibN = 90

// naiveFibMax is the largest n computed by the naive exponential
// recursion. That path exists to be genuinely CPU-heavy, like the
// example workload it stands for (fib(35) takes tens of milliseconds);
// above it the iterative method is used, because the recursion would
// take minutes. Both give the same answer.
const naiveFibMax = 35

// shedRetryAfter is the Retry-After sent when the CPU pool sheds a request.
const shedRetryAfter = time.Second

// parseFibN reads the n query parameter: exactly one integer in
// 0..maxFibN.
func parseFibN(q url.Values) (int, error) {
	vs, ok := q["n"]
	switch {
	case !ok:
		return 0, ParamError("n", "is required")
	case len(vs) != 1:
		return 0, ParamError("n", "must be given once")
	}
	n, err := strconv.Atoi(vs[0])
	if err != nil {
		return 0, ParamError("n", "must be an integer from 0 to %d", maxFibN)
	}
	if n < 0 || n > maxFibN {
		return 0, ParamError("n", "must be from 0 to %d; %d is out of range", maxFibN, n)
	}
	return n, nil
}

// fib returns Fibonacci(n) for 0 ≤ n ≤ maxFibN, with fib(0) = 0 and
// fib(1) = 1.
func fib(n int) uint64 {
	if n <= naiveFibMax {
		return fibNaive(n)
	}
	var a, b uint64 = 0, 1
	for range n {
		a, b = b, a+b
	}
	return a
}

// fibNaive is the exponential recursion, deliberately: see naiveFibMax.
func fibNaive(n int) uint64 {
	if n < 2 {
		return uint64(n)
	}
	return fibNaive(n-1) + fibNaive(n-2)
}

// fibonacci serves GET /api/v1/compute/fibonacci?n=…: it computes
// Fibonacci(n) on the CPU pool so that a burst of these requests cannot
// take every CPU from the rest of the API. When the pool is saturated it
// answers 503 with Retry-After at once rather than queueing without
// bound. The value is a decimal string because JSON numbers above 2^53
// lose precision in many clients; ms is the time spent, including any
// wait for a worker.
func (a *API) fibonacci(w http.ResponseWriter, r *http.Request) {
	n, err := parseFibN(r.URL.Query())
	if err != nil {
		WriteError(w, r, err)
		return
	}
	start := time.Now()
	v, err := cpupool.Do(r.Context(), a.cpu, func() uint64 { return fib(n) })
	if err != nil {
		WriteError(w, r, computeErr(err))
		return
	}
	WriteJSON(w, r, http.StatusOK, map[string]any{
		"n":     n,
		"value": strconv.FormatUint(v, 10),
		"ms":    float64(time.Since(start).Microseconds()) / 1000,
	})
}

// computeErr maps a CPU-pool failure to what the client sees.
func computeErr(err error) error {
	switch {
	case errors.Is(err, cpupool.ErrSaturated):
		return &Error{Code: CodeUnavailable, Message: "the server is busy computing; retry shortly", RetryAfter: shedRetryAfter, Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away or the request timed out while waiting.
		return &Error{Code: CodeUnavailable, Message: "the request ended before the computation did", Err: err}
	}
	return err
}
