package cli

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lastLineJSON decodes the last line of out into v.
func lastLineJSON(t *testing.T, out string, v any) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	last := lines[len(lines)-1]
	dec := json.NewDecoder(strings.NewReader(last))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("last line is not the expected JSON object: %v\n%s", err, out)
	}
}

// The bench smoke tests check the shape and sanity of the results, never
// the speed.
func TestBenchThroughput(t *testing.T) {
	t.Parallel()
	r := kiln(t, nil, "bench", "--jobs", "2000", "--workers", "50", "--json")
	if r.code != 0 {
		t.Fatal(r)
	}
	var res struct {
		Mode           string  `json:"mode"`
		Driver         string  `json:"driver"`
		Jobs           int     `json:"jobs"`
		Workers        int     `json:"workers"`
		InsertJobsPerS float64 `json:"insert_jobs_per_s"`
		WorkJobsPerS   float64 `json:"work_jobs_per_s"`
		PeakRSSMB      float64 `json:"peak_rss_mb"`
	}
	lastLineJSON(t, r.stdout, &res)
	if res.Mode != "throughput" || res.Driver != "sqlite" || res.Jobs != 2000 || res.Workers != 50 ||
		!(res.InsertJobsPerS > 0) || !(res.WorkJobsPerS > 0) || !(res.PeakRSSMB > 0) {
		t.Errorf("bench result %+v", res)
	}
	// Without --db the run used a temporary database and removed it.
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("bench left %s behind", e.Name())
	}
}

func TestBenchLatency(t *testing.T) {
	t.Parallel()
	r := kiln(t, nil, "bench", "--mode", "latency", "--rate", "100", "--duration", "1s", "--json")
	if r.code != 0 {
		t.Fatal(r)
	}
	var res struct {
		Mode   string  `json:"mode"`
		Driver string  `json:"driver"`
		Jobs   int     `json:"jobs"`
		Rate   float64 `json:"rate"`
		P50    float64 `json:"p50_ms"`
		P95    float64 `json:"p95_ms"`
		P99    float64 `json:"p99_ms"`
		Max    float64 `json:"max_ms"`
	}
	lastLineJSON(t, r.stdout, &res)
	if res.Mode != "latency" || res.Driver != "sqlite" || res.Jobs != 100 || res.Rate != 100 {
		t.Errorf("bench result %+v", res)
	}
	if !(res.P50 > 0 && res.P50 <= res.P95 && res.P95 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("percentiles out of order: p50 %v p95 %v p99 %v max %v", res.P50, res.P95, res.P99, res.Max)
	}
}

// --cpuprofile writes a gzipped pprof CPU profile: its sample types name
// the unit of CPU profiles, nanoseconds.
func TestBenchCPUProfile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	r := kiln(t, nil, "bench", "--jobs", "2000", "--workers", "20", "--json", "--cpuprofile", path)
	if r.code != 0 {
		t.Fatal(r)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("profile is not gzipped: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("reading the profile: %v", err)
	}
	if !bytes.Contains(b, []byte("nanoseconds")) {
		t.Errorf("profile of %d bytes holds no CPU sample type", len(b))
	}
}
