package monitor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// startRecorder starts a flight recorder for one test, holding frMu until
// the test ends.
func startRecorder(t *testing.T, opts FROptions) *FlightRecorder {
	t.Helper()
	frMu.Lock()
	t.Cleanup(frMu.Unlock)
	f, err := NewFlightRecorder(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

// busy does some work for the trace to record.
func busy() {
	done := make(chan int)
	for i := range 8 {
		go func() {
			s := 0
			for j := range 100_000 {
				s += j ^ i
			}
			done <- s
		}()
	}
	for range 8 {
		<-done
	}
}

// traceFiles lists the trace files in dir, oldest first.
func traceFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func checkTrace(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) <= 16 || !bytes.HasPrefix(b, []byte("go 1.")) || !bytes.Contains(b[:16], []byte(" trace")) {
		n := min(len(b), 16)
		t.Fatalf("%s: %d bytes, header %q", path, len(b), b[:n])
	}
}

func TestFlightRecorderSave(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "traces")
	clk := newClock()
	f := startRecorder(t, FROptions{Dir: dir, Now: clk.Now, Window: time.Second})
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("trace dir: %v %v", fi, err)
	}
	if !f.Enabled() {
		t.Fatal("not enabled after Start")
	}
	busy()
	path, err := f.Save("slow-request GET /api/v1/jobs/{id}")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "trace-20260304T050607.000Z-slow-request-GET-api-v1-jobs-id.trace"); path != want {
		t.Errorf("path %s, want %s", path, want)
	}
	checkTrace(t, path)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("trace file mode: %v %v", fi, err)
	}

	// Too soon: refused, whatever the reason.
	clk.Advance(DefaultTraceMinInterval - time.Millisecond)
	if _, err := f.Save("other"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("second save within MinInterval: %v", err)
	}
	clk.Advance(time.Millisecond)
	path2, err := f.Save("other")
	if err != nil {
		t.Fatal(err)
	}
	checkTrace(t, path2)
	if got := traceFiles(t, dir); len(got) != 2 {
		t.Errorf("files %v", got)
	}

	// The admin dump reads the same window.
	var buf bytes.Buffer
	if n, err := f.WriteTo(&buf); err != nil || n != int64(buf.Len()) || !bytes.HasPrefix(buf.Bytes(), []byte("go 1.")) {
		t.Errorf("WriteTo: %d %v %q", n, err, buf.Bytes()[:min(buf.Len(), 16)])
	}
}

func TestFlightRecorderRetention(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Files that are not ours are left alone.
	for _, n := range []string{"notes.txt", "trace-keep.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	clk := newClock()
	f := startRecorder(t, FROptions{Dir: dir, Now: clk.Now, MinInterval: time.Second, Keep: 2})
	var paths []string
	for i := range 4 {
		busy()
		p, err := f.Save("lag")
		if err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
		paths = append(paths, filepath.Base(p))
		clk.Advance(time.Second)
	}
	want := append([]string{"notes.txt"}, paths[2:]...)
	want = append(want, "trace-keep.txt")
	slices.Sort(want)
	if got := traceFiles(t, dir); !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
}

func TestFlightRecorderSameTimeNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := newClock()
	f := startRecorder(t, FROptions{Dir: dir, Now: clk.Now, MinInterval: time.Nanosecond})
	a, err := f.Save("x")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Nanosecond) // same millisecond in the name
	b, err := f.Save("x")
	if err != nil {
		t.Fatal(err)
	}
	if a == b || !strings.HasSuffix(b, "-x-1.trace") {
		t.Errorf("names %s and %s", a, b)
	}
}

func TestFlightRecorderNotRecording(t *testing.T) {
	t.Parallel()
	f, err := NewFlightRecorder(FROptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if f.Enabled() {
		t.Error("enabled before Start")
	}
	if _, err := f.WriteTo(&bytes.Buffer{}); err == nil {
		t.Error("WriteTo before Start succeeded")
	}
	if p, err := f.Save("x"); err == nil || p != "" {
		t.Errorf("Save before Start: %q %v", p, err)
	}
	if got := traceFiles(t, f.dir); len(got) != 0 {
		t.Errorf("a failed save left %v", got)
	}

	noDir, err := NewFlightRecorder(FROptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noDir.Save("x"); err == nil {
		t.Error("Save without a directory succeeded")
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFlightRecorder(FROptions{Dir: filepath.Join(file, "sub")}); err == nil {
		t.Error("a trace directory under a file was accepted")
	}
}

func TestSanitizeReason(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"slow-request GET /api/v1/jobs/{id}": "slow-request-GET-api-v1-jobs-id",
		"sched-lag":                          "sched-lag",
		"":                                   "event",
		"../../etc/passwd":                   "etc-passwd",
		"  trailing  ":                       "trailing",
		"héllo wörld":                        "h-llo-w-rld",
		"job_kind.v2":                        "job_kind.v2",
		"///":                                "event",
		strings.Repeat("a", 200):             strings.Repeat("a", maxReasonLen),
	} {
		if got := sanitizeReason(in); got != want {
			t.Errorf("sanitizeReason(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSanitizeReason(f *testing.F) {
	for _, s := range []string{"slow-request GET /api/v1/jobs/{id}", "", "..", "a/../b", "\x00\xff", "日本語", strings.Repeat("-a", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := sanitizeReason(in)
		if out == "" || len(out) > maxReasonLen || !utf8.ValidString(out) || strings.HasPrefix(out, ".") || strings.HasPrefix(out, "-") {
			t.Fatalf("sanitizeReason(%q) = %q", in, out)
		}
		for _, r := range out {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
				t.Fatalf("sanitizeReason(%q) = %q has %q", in, out, r)
			}
		}
	})
}
