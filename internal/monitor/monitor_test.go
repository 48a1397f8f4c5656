package monitor

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/testutil"
)

// testBuckets are the boundaries of the synthetic histograms, in seconds:
// an underflow bucket, [0,1ms], (1ms,10ms], (10ms,100ms], (100ms,1s],
// (1s,10s] and an overflow bucket.
var testBuckets = []float64{math.Inf(-1), 0, 0.001, 0.01, 0.1, 1, 10, math.Inf(1)}

func hist(counts ...uint64) *metrics.Float64Histogram {
	return &metrics.Float64Histogram{Counts: counts, Buckets: testBuckets}
}

func TestWindowQuantiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		prev, cur     *metrics.Float64Histogram
		p50, p99, max float64
		count         uint64
	}{
		{"no data", nil, nil, 0, 0, 0, 0},
		{"empty window", hist(0, 5, 0, 0, 0, 0, 0), hist(0, 5, 0, 0, 0, 0, 0), 0, 0, 0, 0},
		{"whole histogram without a baseline", nil, hist(0, 50, 50, 0, 0, 0, 0), 0.001, 0.01, 0.01, 100},
		// The 1000 fast events before the window must not hide the two
		// slow ones in it.
		{"only the window counts", hist(0, 1000, 0, 0, 0, 0, 0), hist(0, 1098, 0, 0, 2, 0, 0), 0.001, 1, 1, 100},
		// 99 of 100 below 1ms: p99 is the 99th event, still fast; the
		// max is the slow one.
		{"p99 rank is ceil", nil, hist(0, 99, 0, 0, 0, 1, 0), 0.001, 0.001, 10, 100},
		{"101 events", nil, hist(0, 99, 0, 0, 0, 2, 0), 0.001, 10, 10, 101},
		{"overflow bucket reports its lower bound", nil, hist(0, 1, 0, 0, 0, 0, 3), 10, 10, 10, 4},
		{"underflow bucket reports zero", nil, hist(4, 0, 0, 0, 0, 0, 0), 0, 0, 0, 4},
		{"single event", nil, hist(0, 0, 0, 1, 0, 0, 0), 0.1, 0.1, 0.1, 1},
		{"other buckets: whole histogram", &metrics.Float64Histogram{Counts: []uint64{7}, Buckets: []float64{0, 1}}, hist(0, 0, 2, 0, 0, 0, 0), 0.01, 0.01, 0.01, 2},
		{"reset counter counts in full", hist(0, 9, 9, 0, 0, 0, 0), hist(0, 2, 9, 0, 0, 0, 0), 0.001, 0.001, 0.001, 2},
		{"malformed histogram", nil, &metrics.Float64Histogram{Counts: []uint64{1, 2}, Buckets: []float64{0, 1}}, 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := windowQuantiles(tc.prev, tc.cur)
			if q.p50 != tc.p50 || q.p99 != tc.p99 || q.max != tc.max || q.count != tc.count {
				t.Errorf("got p50=%v p99=%v max=%v count=%d, want %v %v %v %d", q.p50, q.p99, q.max, q.count, tc.p50, tc.p99, tc.max, tc.count)
			}
		})
	}
}

func TestRank(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ total, permille, want uint64 }{
		{1, 990, 1}, {1, 500, 1}, {2, 500, 1}, {3, 500, 2}, {100, 990, 99}, {101, 990, 100},
		{1000, 990, 990}, {math.MaxUint64, 1000, math.MaxUint64}, {math.MaxUint64, 990, 18262276632972456099},
	} {
		if got := rank(tc.total, tc.permille); got != tc.want {
			t.Errorf("rank(%d, %d) = %d, want %d", tc.total, tc.permille, got, tc.want)
		}
	}
}

// lagReading is a reading whose scheduler histogram holds fast events
// and, beyond base, slow more events in (100ms,1s].
func lagReading(base *reading, fast, slow uint64) reading {
	r := reading{heapObjects: 1 << 20, heapGoal: 4 << 20, totalMemory: 8 << 20, goroutines: 42, gcCycles: 3, gomaxprocs: 4, memLimit: math.MaxInt64}
	var prev []uint64
	if base != nil && base.schedLat != nil {
		prev = base.schedLat.Counts
	} else {
		prev = make([]uint64, len(testBuckets)-1)
	}
	counts := append([]uint64(nil), prev...)
	counts[1] += fast
	counts[4] += slow
	r.schedLat = hist(counts...)
	r.gcPause = hist(0, 0, 0, 0, 0, 0, 0)
	return r
}

func TestObserveWarnsRateLimited(t *testing.T) {
	t.Parallel()
	var logs testutil.Logs
	clk := newClock()
	var lags atomic.Int32
	m := New(Options{Logger: logs.Logger(), Now: clk.Now, WarnEvery: time.Minute, OnLag: func(s Snapshot) {
		if s.SchedLatencyP99MS != 1000 {
			t.Errorf("OnLag got p99 %v ms", s.SchedLatencyP99MS)
		}
		lags.Add(1)
	}})
	m.stacks = func(limit int) string { return fmt.Sprintf("STACKS top %d", limit) }
	warnings := func() []map[string]any { return logs.Records(t, testutil.Message("scheduler latency over threshold")) }

	if s := m.Snapshot(); !s.SampledAt.IsZero() {
		t.Fatalf("snapshot before the first sample: %+v", s)
	}
	r := lagReading(nil, 0, 1000) // slow events before the first sample are not a window
	m.observe(r)
	s := m.Snapshot()
	if s.SampledAt != clk.Now() || s.WindowS != 0 || s.SchedLatencyP99MS != 0 || s.Goroutines != 42 || s.HeapBytes != 1<<20 ||
		s.HeapGoalBytes != 4<<20 || s.TotalMemoryBytes != 8<<20 || s.GCCycles != 3 || s.GOMAXPROCS != 4 || s.MemoryLimitBytes != 0 {
		t.Fatalf("first snapshot: %+v", s)
	}
	if len(warnings()) != 0 || lags.Load() != 0 {
		t.Fatal("the first sample warned")
	}

	// A window with 98 fast and 2 slow events: p99 is slow.
	clk.Advance(time.Second)
	r = lagReading(&r, 98, 2)
	m.observe(r)
	s = m.Snapshot()
	if s.SchedLatencyP50MS != 1 || s.SchedLatencyP99MS != 1000 || s.SchedLatencyMaxMS != 1000 || s.WindowS != 1 || s.UptimeS != 1 {
		t.Fatalf("lag snapshot: %+v", s)
	}
	w := warnings()
	if len(w) != 1 || lags.Load() != 1 {
		t.Fatalf("got %d warnings and %d OnLag calls, want 1 and 1", len(w), lags.Load())
	}
	if w[0]["level"] != "WARN" || w[0]["sched_latency_p99_ms"] != 1000.0 || w[0]["threshold_ms"] != 100.0 ||
		w[0]["goroutines"] != 42.0 || w[0]["stacks"] != "STACKS top 10" || w[0]["suppressed"] != 0.0 {
		t.Errorf("warning: %v", w[0])
	}

	// Lag again within WarnEvery: no line, but OnLag still hears of it.
	clk.Advance(10 * time.Second)
	r = lagReading(&r, 98, 2)
	m.observe(r)
	if len(warnings()) != 1 || lags.Load() != 2 {
		t.Fatalf("got %d warnings and %d OnLag calls, want 1 and 2", len(warnings()), lags.Load())
	}
	// A quiet window: nothing.
	clk.Advance(time.Second)
	r = lagReading(&r, 1000, 0)
	m.observe(r)
	if s := m.Snapshot(); s.SchedLatencyP99MS != 1 || s.SchedLatencyMaxMS != 1 {
		t.Fatalf("quiet snapshot: %+v", s)
	}
	if len(warnings()) != 1 || lags.Load() != 2 {
		t.Fatal("a quiet window warned")
	}
	// WarnEvery after the first warning, the next one says how many were
	// held back.
	clk.Advance(time.Minute)
	r = lagReading(&r, 0, 5)
	m.observe(r)
	w = warnings()
	if len(w) != 2 || w[1]["suppressed"] != 1.0 || lags.Load() != 3 {
		t.Fatalf("got %d warnings (%v), %d OnLag calls", len(w), w, lags.Load())
	}
}

func TestObserveThresholds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		threshold time.Duration
		slowBkt   int // bucket index of the window's events
		warn      bool
	}{
		{"default 100ms, events up to 100ms", 0, 3, false},
		{"default 100ms, events up to 1s", 0, 4, true},
		{"disabled", Disabled, 6, false},
		{"custom 5ms, events up to 10ms", 5 * time.Millisecond, 2, true},
		{"custom 1s, events up to 1s", time.Second, 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs testutil.Logs
			clk := newClock()
			var lagged bool
			m := New(Options{Logger: logs.Logger(), Now: clk.Now, SchedLatencyThreshold: tc.threshold, StackLimit: -1, OnLag: func(Snapshot) { lagged = true }})
			m.stacks = func(int) string { t.Error("stacks taken with StackLimit < 0"); return "" }
			m.observe(reading{schedLat: hist(0, 0, 0, 0, 0, 0, 0)})
			counts := make([]uint64, 7)
			counts[tc.slowBkt] = 10
			clk.Advance(time.Second)
			m.observe(reading{schedLat: hist(counts...)})
			if got := len(logs.Records(t, testutil.Message("scheduler latency over threshold"))) == 1; got != tc.warn || lagged != tc.warn {
				t.Errorf("warned %v, OnLag %v; want %v", got, lagged, tc.warn)
			}
		})
	}
}

func TestObserveMemoryLimit(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	m.observe(reading{memLimit: 512 << 20})
	if s := m.Snapshot(); s.MemoryLimitBytes != 512<<20 {
		t.Errorf("memory limit %d", s.MemoryLimitBytes)
	}
}

func TestRunSamplesTheRuntime(t *testing.T) {
	t.Parallel()
	m := New(Options{Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	testutil.Eventually(t, "a second sample", func() bool { return m.Snapshot().WindowS > 0 })
	cancel()
	<-done
	s := m.Snapshot()
	if s.Goroutines < 2 || s.HeapBytes == 0 || s.HeapGoalBytes == 0 || s.TotalMemoryBytes < s.HeapBytes ||
		s.GOMAXPROCS != runtime.GOMAXPROCS(0) || s.UptimeS <= 0 || s.SampledAt.IsZero() || s.SampledAt.After(time.Now()) ||
		s.SchedLatencyP50MS < 0 || s.SchedLatencyP99MS < s.SchedLatencyP50MS || s.SchedLatencyMaxMS < s.SchedLatencyP99MS ||
		s.GCPauseMaxMS < s.GCPauseP99MS || s.WindowS > 10 {
		t.Errorf("implausible snapshot: %+v", s)
	}
}

// TestRunWarnsOnRealLag runs the monitor on the real runtime with a
// threshold every scheduling delay exceeds, while goroutines hand a
// token back and forth, so that each window holds scheduler events.
func TestRunWarnsOnRealLag(t *testing.T) {
	t.Parallel()
	var logs testutil.Logs
	var lagged atomic.Bool
	m := New(Options{Interval: 10 * time.Millisecond, SchedLatencyThreshold: time.Nanosecond, Logger: logs.Logger(), OnLag: func(Snapshot) { lagged.Store(true) }})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	ping, pong := make(chan struct{}), make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case ping <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case <-pong:
			case <-ctx.Done():
				return
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-ping:
			case <-ctx.Done():
				return
			}
			select {
			case pong <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	})
	wg.Go(func() { m.Run(ctx) })
	testutil.Eventually(t, "a lag warning", func() bool {
		return len(logs.Records(t, testutil.Message("scheduler latency over threshold"))) > 0 && lagged.Load()
	})
	w := logs.Records(t, testutil.Message("scheduler latency over threshold"))[0]
	stacks, _ := w["stacks"].(string)
	if !strings.Contains(stacks, "goroutines in") || !strings.Contains(stacks, "monitor.") {
		t.Errorf("warning stacks: %q", stacks)
	}
	if p99, _ := w["sched_latency_p99_ms"].(float64); p99 <= 0 {
		t.Errorf("warning p99: %v", w["sched_latency_p99_ms"])
	}
}
