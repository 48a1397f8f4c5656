// Package harness holds what the comparison programs share: the flags and
// JSON output of `kiln bench`, the paced single-insert loop of latency mode,
// percentiles and peak RSS, all measured the way kiln's own bench measures.
package harness

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Flags are the flags of `kiln bench`, with the same names and defaults.
type Flags struct {
	Mode     string
	Jobs     int
	Workers  int
	Rate     float64
	Duration time.Duration
	JSON     bool
}

// Register adds the shared flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Mode, "mode", "throughput", "throughput or latency")
	fs.IntVar(&f.Jobs, "jobs", 20000, "throughput: jobs to insert and work")
	fs.IntVar(&f.Workers, "workers", 100, "worker slots")
	fs.Float64Var(&f.Rate, "rate", 200, "latency: inserts per second")
	fs.DurationVar(&f.Duration, "duration", 10*time.Second, "latency: how long to insert")
	fs.BoolVar(&f.JSON, "json", false, "print one JSON object as the last line")
}

// Validate applies the limits `kiln bench` applies.
func (f *Flags) Validate() error {
	switch {
	case f.Mode != "throughput" && f.Mode != "latency":
		return fmt.Errorf("--mode must be throughput or latency, got %q", f.Mode)
	case f.Jobs < 1 || f.Jobs > 10_000_000:
		return errors.New("--jobs must be between 1 and 10000000")
	case f.Workers < 1 || f.Workers > 10000:
		return errors.New("--workers must be between 1 and 10000")
	case f.Rate <= 0 || f.Rate > 100000:
		return errors.New("--rate must be in (0, 100000]")
	case f.Duration <= 0 || f.Duration > 24*time.Hour:
		return errors.New("--duration must be positive and at most 24h")
	}
	return nil
}

// Throughput has the fields of kiln's throughput JSON plus System and
// details a reader needs to interpret the numbers.
type Throughput struct {
	System         string  `json:"system"`
	Mode           string  `json:"mode"`
	Driver         string  `json:"driver"`
	Jobs           int     `json:"jobs"`
	Workers        int     `json:"workers"`
	InsertJobsPerS float64 `json:"insert_jobs_per_s"`
	WorkJobsPerS   float64 `json:"work_jobs_per_s"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	InsertMethod   string  `json:"insert_method,omitempty"`
	Settings       string  `json:"settings,omitempty"`
	// Extra holds system-specific measurements (see each program).
	Extra map[string]float64 `json:"extra,omitempty"`
}

// Latency has the fields of kiln's latency JSON plus System.
type Latency struct {
	System   string  `json:"system"`
	Mode     string  `json:"mode"`
	Driver   string  `json:"driver"`
	Jobs     int     `json:"jobs"`
	Rate     float64 `json:"rate"`
	P50      float64 `json:"p50_ms"`
	P95      float64 `json:"p95_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	Settings string  `json:"settings,omitempty"`
}

// Print writes res as text, or as one JSON line when asJSON.
func Print(res any, asJSON bool) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if asJSON {
		fmt.Println(string(b))
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%-18s %v\n", k, m[k])
	}
	return nil
}

// Fatal prints err to stderr and exits 1.
func Fatal(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}

// RandomSuffix returns 8 random hex characters.
func RandomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Recorder collects latencies observed by handlers.
type Recorder struct {
	mu  sync.Mutex
	lat []time.Duration
}

// NewRecorder sizes a recorder for n observations.
func NewRecorder(n int) *Recorder { return &Recorder{lat: make([]time.Duration, 0, n)} }

// Observe records the time from insertStartNanos (UnixNano taken just
// before the insert call) to now. Call it first thing in the handler.
func (r *Recorder) Observe(now time.Time, insertStartNanos int64) {
	d := now.Sub(time.Unix(0, insertStartNanos))
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.mu.Unlock()
}

// Len returns the number of observations.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lat)
}

// PayloadArgs is the JSON payload that carries the insert start time.
type PayloadArgs struct {
	T int64 `json:"t"`
}

// RunLatency inserts one job at a time at rate per second for duration,
// as kiln's bench does: insert(ts) must insert one job whose payload
// carries ts (UnixNano, read just before the insert call) and the handler
// must call rec.Observe. It waits up to 30 s for all jobs to start.
func RunLatency(ctx context.Context, rate float64, duration time.Duration, rec *Recorder, insert func(ctx context.Context, ts int64) error) (total int, p50, p95, p99, maxMS float64, err error) {
	total = int(rate * duration.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for inserted := 0; inserted < total; inserted++ {
		next := start.Add(time.Duration(inserted) * interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return 0, 0, 0, 0, 0, ctx.Err()
			}
		}
		if err := insert(ctx, time.Now().UnixNano()); err != nil {
			return 0, 0, 0, 0, 0, fmt.Errorf("insert: %w", err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for rec.Len() < total {
		if time.Now().After(deadline) {
			return 0, 0, 0, 0, 0, fmt.Errorf("only %d of %d jobs started within 30s", rec.Len(), total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	lat := rec.lat
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return Round3(float64(d) / float64(time.Millisecond)) }
	return total, ms(Percentile(lat, 0.50)), ms(Percentile(lat, 0.95)), ms(Percentile(lat, 0.99)), ms(lat[len(lat)-1]), nil
}

// Percentile returns the p-quantile (0..1) of sorted by the nearest-rank
// method; zero for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Round rounds to one decimal.
func Round(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

// Round3 rounds to three decimals.
func Round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// PeakRSSMB returns the process's peak resident set size in MiB (VmHWM).
// It covers this process only, not a Redis or PostgreSQL server.
func PeakRSSMB() float64 {
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
				kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
				if err == nil {
					return Round(kb / 1024)
				}
			}
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return Round(float64(m.Sys) / (1 << 20))
}
