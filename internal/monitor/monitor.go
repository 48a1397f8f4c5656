package monitor

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnhq/kiln/internal/defaults"
)

// Disabled, given as a threshold, turns that check off. A zero threshold
// means the default.
const Disabled time.Duration = -1

// The defaults of [Options].
const (
	DefaultInterval              = time.Second
	DefaultSchedLatencyThreshold = 100 * time.Millisecond
	DefaultWarnEvery             = time.Minute
	DefaultStackLimit            = 10
)

// The runtime/metrics names the monitor reads. A name the running Go does
// not offer is skipped and its figure stays zero.
const (
	metricSchedLatencies = "/sched/latencies:seconds"
	metricHeapObjects    = "/memory/classes/heap/objects:bytes"
	metricHeapGoal       = "/gc/heap/goal:bytes"
	metricTotalMemory    = "/memory/classes/total:bytes"
	metricGoroutines     = "/sched/goroutines:goroutines"
	metricGCCycles       = "/gc/cycles/total:gc-cycles"
	metricGCPauses       = "/sched/pauses/total/gc:seconds"
)

// Options configures a [Monitor].
type Options struct {
	// Interval is how often the runtime is sampled (default 1s). Each
	// sample's latency figures cover the window since the previous one.
	Interval time.Duration
	// SchedLatencyThreshold is the window p99 of scheduler latency (how
	// long runnable goroutines waited for a thread) above which the
	// monitor warns and calls OnLag. Zero means 100ms; [Disabled] turns
	// the check off.
	SchedLatencyThreshold time.Duration
	// WarnEvery is the least time between two warnings (default 1m);
	// windows over the threshold in between are counted in the next
	// warning's "suppressed" field.
	WarnEvery time.Duration
	// StackLimit is how many distinct goroutine stacks, the most common
	// first, a warning carries (default 10; negative for none). Taking
	// them pauses the program for a moment per thousands of goroutines,
	// at most once per WarnEvery.
	StackLimit int
	// Logger receives the warnings (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnLag, if set, is called with the snapshot of every window whose
	// scheduler latency p99 is over the threshold, whether or not a
	// warning was logged (see [SlowLog.Lag] to save a trace). It runs on
	// the sampling goroutine and must return quickly.
	OnLag func(Snapshot)
}

// Snapshot is the runtime's state at one sample. Latencies and pauses are
// those of the window since the previous sample, read from the runtime's
// histograms: each figure is the upper bound of the histogram bucket it
// falls in, so it may overstate the true value by the bucket's width
// (about 12% at most).
type Snapshot struct {
	// SchedLatencyP50MS, P99MS and MaxMS are how long goroutines waited
	// between becoming runnable and running, in milliseconds.
	SchedLatencyP50MS float64 `json:"sched_latency_p50_ms"`
	SchedLatencyP99MS float64 `json:"sched_latency_p99_ms"`
	SchedLatencyMaxMS float64 `json:"sched_latency_max_ms"`
	// GCPauseP99MS and GCPauseMaxMS are the stop-the-world GC pauses.
	GCPauseP99MS float64 `json:"gc_pause_p99_ms"`
	GCPauseMaxMS float64 `json:"gc_pause_max_ms"`
	// HeapBytes is the memory occupied by live and not yet swept heap
	// objects.
	HeapBytes uint64 `json:"heap_bytes"`
	// HeapGoalBytes is the heap size at which the next GC starts.
	HeapGoalBytes uint64 `json:"heap_goal_bytes"`
	// TotalMemoryBytes is all memory mapped by the Go runtime.
	TotalMemoryBytes uint64 `json:"total_memory_bytes"`
	Goroutines       uint64 `json:"goroutines"`
	// GCCycles counts completed GC cycles since the process started.
	GCCycles   uint64 `json:"gc_cycles"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// MemoryLimitBytes is the soft memory limit (GOMEMLIMIT); 0 when
	// there is none.
	MemoryLimitBytes int64 `json:"memory_limit_bytes"`
	// UptimeS is the time since the monitor was created, in seconds.
	UptimeS float64 `json:"uptime_s"`
	// WindowS is the length of the window the latency figures cover, in
	// seconds; 0 on the first sample, which has no window.
	WindowS   float64   `json:"window_s"`
	SampledAt time.Time `json:"sampled_at"`
}

// reading is one raw read of the runtime's figures. Histograms are nil
// when the runtime does not offer them.
type reading struct {
	schedLat    *metrics.Float64Histogram
	gcPause     *metrics.Float64Histogram
	heapObjects uint64
	heapGoal    uint64
	totalMemory uint64
	goroutines  uint64
	gcCycles    uint64
	gomaxprocs  int
	memLimit    int64
}

// Monitor samples the Go runtime. Create it with [New] and start it with
// [Monitor.Run].
type Monitor struct {
	interval   time.Duration
	threshold  time.Duration
	warnEvery  time.Duration
	stackLimit int
	log        *slog.Logger
	now        func() time.Time
	onLag      func(Snapshot)
	names      []string
	started    time.Time
	// stacks returns the top goroutine stacks for a warning; a test may
	// replace it.
	stacks func(limit int) string

	mu         sync.Mutex
	prev       *reading
	prevAt     time.Time
	lastWarn   time.Time
	suppressed int

	snap atomic.Pointer[Snapshot]
}

// New returns a monitor; it samples nothing until [Monitor.Run].
func New(opts Options) *Monitor {
	m := &Monitor{
		interval:   opts.Interval,
		threshold:  opts.SchedLatencyThreshold,
		warnEvery:  opts.WarnEvery,
		stackLimit: opts.StackLimit,
		log:        opts.Logger,
		now:        opts.Now,
		onLag:      opts.OnLag,
		stacks:     topStacks,
	}
	defaults.Positive(&m.interval, DefaultInterval)
	m.threshold = cmp.Or(m.threshold, DefaultSchedLatencyThreshold)
	defaults.Positive(&m.warnEvery, DefaultWarnEvery)
	m.stackLimit = cmp.Or(m.stackLimit, DefaultStackLimit)
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.started = m.now()
	want := map[string]metrics.ValueKind{
		metricSchedLatencies: metrics.KindFloat64Histogram,
		metricHeapObjects:    metrics.KindUint64,
		metricHeapGoal:       metrics.KindUint64,
		metricTotalMemory:    metrics.KindUint64,
		metricGoroutines:     metrics.KindUint64,
		metricGCCycles:       metrics.KindUint64,
		metricGCPauses:       metrics.KindFloat64Histogram,
	}
	for _, d := range metrics.All() {
		if k, ok := want[d.Name]; ok && k == d.Kind {
			m.names = append(m.names, d.Name)
		}
	}
	return m
}

// Run samples the runtime every interval until ctx is done: once at once,
// which sets the baseline, then once per tick.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	m.observe(m.read())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.observe(m.read())
		}
	}
}

// Snapshot returns the latest sample; its SampledAt is zero before the
// first.
func (m *Monitor) Snapshot() Snapshot {
	if s := m.snap.Load(); s != nil {
		return *s
	}
	return Snapshot{}
}

// read reads the runtime's current figures.
func (m *Monitor) read() reading {
	samples := make([]metrics.Sample, len(m.names))
	for i, n := range m.names {
		samples[i].Name = n
	}
	metrics.Read(samples)
	r := reading{gomaxprocs: runtime.GOMAXPROCS(0), memLimit: debug.SetMemoryLimit(-1)}
	for _, s := range samples {
		switch s.Value.Kind() {
		case metrics.KindUint64:
			v := s.Value.Uint64()
			switch s.Name {
			case metricHeapObjects:
				r.heapObjects = v
			case metricHeapGoal:
				r.heapGoal = v
			case metricTotalMemory:
				r.totalMemory = v
			case metricGoroutines:
				r.goroutines = v
			case metricGCCycles:
				r.gcCycles = v
			}
		case metrics.KindFloat64Histogram:
			// The runtime may reuse a histogram on the next Read; ours
			// is kept as the next window's baseline, so copy it.
			h := copyHist(s.Value.Float64Histogram())
			switch s.Name {
			case metricSchedLatencies:
				r.schedLat = h
			case metricGCPauses:
				r.gcPause = h
			}
		}
	}
	return r
}

func copyHist(h *metrics.Float64Histogram) *metrics.Float64Histogram {
	if h == nil {
		return nil
	}
	return &metrics.Float64Histogram{
		Counts:  append([]uint64(nil), h.Counts...),
		Buckets: append([]float64(nil), h.Buckets...),
	}
}

// observe turns a reading into the latest snapshot, comparing it with the
// previous reading for the window's latencies, and warns when the
// window's scheduler latency p99 is over the threshold. It is the whole
// of a sample but the read, so tests feed it synthetic readings.
func (m *Monitor) observe(r reading) {
	now := m.now()
	s := Snapshot{
		HeapBytes:        r.heapObjects,
		HeapGoalBytes:    r.heapGoal,
		TotalMemoryBytes: r.totalMemory,
		Goroutines:       r.goroutines,
		GCCycles:         r.gcCycles,
		GOMAXPROCS:       r.gomaxprocs,
		UptimeS:          now.Sub(m.started).Seconds(),
		SampledAt:        now,
	}
	if r.memLimit > 0 && r.memLimit < math.MaxInt64 {
		s.MemoryLimitBytes = r.memLimit
	}

	m.mu.Lock()
	prev, prevAt := m.prev, m.prevAt
	m.prev, m.prevAt = &r, now
	var lag, warn bool
	var suppressed int
	if prev != nil {
		s.WindowS = now.Sub(prevAt).Seconds()
		lat := windowQuantiles(prev.schedLat, r.schedLat)
		s.SchedLatencyP50MS, s.SchedLatencyP99MS, s.SchedLatencyMaxMS = ms(lat.p50), ms(lat.p99), ms(lat.max)
		gc := windowQuantiles(prev.gcPause, r.gcPause)
		s.GCPauseP99MS, s.GCPauseMaxMS = ms(gc.p99), ms(gc.max)
		lag = m.threshold > 0 && lat.p99 > m.threshold.Seconds()
		if lag {
			if m.lastWarn.IsZero() || now.Sub(m.lastWarn) >= m.warnEvery {
				warn, suppressed = true, m.suppressed
				m.lastWarn, m.suppressed = now, 0
			} else {
				m.suppressed++
			}
		}
	}
	m.snap.Store(&s)
	m.mu.Unlock()

	if warn {
		var stacks string
		if m.stackLimit > 0 {
			stacks = m.stacks(m.stackLimit)
		}
		m.log.Warn("scheduler latency over threshold",
			"sched_latency_p99_ms", s.SchedLatencyP99MS,
			"sched_latency_p50_ms", s.SchedLatencyP50MS,
			"sched_latency_max_ms", s.SchedLatencyMaxMS,
			"threshold_ms", msDuration(m.threshold),
			"window_s", s.WindowS,
			"goroutines", s.Goroutines,
			"gomaxprocs", s.GOMAXPROCS,
			"heap_bytes", s.HeapBytes,
			"gc_pause_max_ms", s.GCPauseMaxMS,
			"suppressed", suppressed,
			"stacks", stacks)
	}
	if lag && m.onLag != nil {
		m.onLag(s)
	}
}

// ms converts seconds to milliseconds.
func ms(sec float64) float64 { return sec * 1e3 }
