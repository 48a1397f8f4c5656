package bench

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/queuetest"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 0.5, 0},
		{ms(), 0.99, 0},
		{ms(7), 0, 7 * time.Millisecond},
		{ms(7), 0.5, 7 * time.Millisecond},
		{ms(7), 1, 7 * time.Millisecond},
		{ms(1, 2), 0.5, 1 * time.Millisecond},
		{ms(1, 2), 0.51, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 0.75, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 0.76, 4 * time.Millisecond},
		{ms(1, 2, 3), 0, 1 * time.Millisecond},
		{ms(1, 2, 3), -1, 1 * time.Millisecond},
		{ms(1, 2, 3), 2, 3 * time.Millisecond},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
		}
	}

	// Nearest rank: the smallest value with at least p of the values at
	// or below it, i.e. rank ceil(p*n), computed here in integers.
	for n := 1; n <= 250; n++ {
		sorted := make([]time.Duration, n)
		for i := range sorted {
			sorted[i] = time.Duration(i + 1)
		}
		for k := 1; k <= 100; k++ {
			want := time.Duration((k*n + 99) / 100)
			if got := Percentile(sorted, float64(k)/100); got != want {
				t.Fatalf("n=%d p=%.2f: got rank %d, want %d", n, float64(k)/100, got, want)
			}
		}
	}
}

func TestPeakRSSMB(t *testing.T) {
	if v := PeakRSSMB(); !(v > 0) || v > 1<<20 {
		t.Errorf("PeakRSSMB() = %v", v)
	}
}

func openDriver(t *testing.T) *sqlitedriver.Driver {
	t.Helper()
	d, err := sqlitedriver.Open(filepath.Join(t.TempDir(), "bench.db"), sqlitedriver.Options{})
	return queuetest.Migrated(t, d, err)
}

// TestRunOnExistingDatabase runs both modes against a database that holds
// a job of its own and checks that the runs leave it alone.
func TestRunOnExistingDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := openDriver(t)
	c, err := queue.New(queue.Config{Driver: d, AllowUnknownKinds: true})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := c.Insert(ctx, queue.InsertParams{Kind: "noop"})
	if err != nil {
		t.Fatal(err)
	}

	tp, err := RunThroughput(ctx, Options{Driver: d, Jobs: 300, Workers: 20})
	if err != nil {
		t.Fatal(err)
	}
	if tp.Mode != "throughput" || tp.Driver != "sqlite" || tp.Jobs != 300 || tp.Workers != 20 ||
		!(tp.InsertJobsPerS > 0) || !(tp.WorkJobsPerS > 0) || !(tp.PeakRSSMB > 0) {
		t.Errorf("throughput result %+v", tp)
	}

	lat, err := RunLatency(ctx, Options{Driver: d, Workers: 4, Rate: 200, Duration: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if lat.Mode != "latency" || lat.Jobs != 50 || lat.Rate != 200 ||
		!(lat.P50 > 0 && lat.P50 <= lat.P95 && lat.P95 <= lat.P99 && lat.P99 <= lat.Max) {
		t.Errorf("latency result %+v", lat)
	}

	stats, err := c.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var benchQueues int
	for _, s := range stats {
		switch {
		case s.Name == queue.DefaultQueue:
			if s.Counts[queue.StateAvailable] != 1 {
				t.Errorf("default queue after the runs: %v", s.Counts)
			}
		case strings.HasPrefix(s.Name, "bench_"):
			benchQueues++
			for st, n := range s.Counts {
				if st != queue.StateCompleted && n != 0 {
					t.Errorf("queue %s: %d jobs %s", s.Name, n, st)
				}
			}
		default:
			t.Errorf("unexpected queue %s", s.Name)
		}
	}
	if benchQueues != 2 {
		t.Errorf("%d bench queues, want one per run", benchQueues)
	}
	j, err := c.Get(ctx, mine.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != queue.StateAvailable || j.Attempt != 0 {
		t.Errorf("the database's own job was touched: %+v", j)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	ctx := context.Background()
	if _, err := RunThroughput(ctx, Options{Jobs: 0, Workers: 1}); err == nil {
		t.Error("RunThroughput with 0 jobs succeeded")
	}
	if _, err := RunThroughput(ctx, Options{Jobs: 1, Workers: 0}); err == nil {
		t.Error("RunThroughput with 0 workers succeeded")
	}
	for _, o := range []Options{
		{Workers: 1, Rate: 0, Duration: time.Second},
		{Workers: 1, Rate: 1e6, Duration: time.Second},
		{Workers: 1, Rate: 10, Duration: 0},
		{Workers: 0, Rate: 10, Duration: time.Second},
	} {
		if _, err := RunLatency(ctx, o); err == nil {
			t.Errorf("RunLatency(%+v) succeeded", o)
		}
	}
}

// TestRunLatencyNoJobs checks that a rate and duration that insert no job
// are refused instead of producing percentiles of nothing.
func TestRunLatencyNoJobs(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := RunLatency(ctx, Options{Driver: openDriver(t), Workers: 1, Rate: 1, Duration: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no job") {
		t.Errorf("RunLatency inserting no job: %v", err)
	}
}

// TestConfigureSeesEveryClient: the Configure hook applies to the clients
// that insert and that work, so hooks it adds see every event.
func TestConfigureSeesEveryClient(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	events := map[queue.EventKind]int{}
	o := Options{Driver: openDriver(t), Jobs: 200, Workers: 10, Configure: func(c *queue.Config) {
		c.Hooks = append(c.Hooks, func(e queue.Event) {
			mu.Lock()
			defer mu.Unlock()
			events[e.Kind]++
		})
	}}
	if _, err := RunThroughput(ctx, o); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if events[queue.EventInserted] != 200 || events[queue.EventStarted] != 200 || events[queue.EventCompleted] != 200 {
		t.Errorf("events seen by the configured hook: %v", events)
	}
}
