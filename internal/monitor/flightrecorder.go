package monitor

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kilnhq/kiln/internal/defaults"
)

// The defaults of [FROptions].
const (
	DefaultTraceWindow      = 10 * time.Second
	DefaultTraceMaxBytes    = 16 << 20
	DefaultTraceMinInterval = time.Minute
	DefaultTraceKeep        = 10
)

// ErrRateLimited is returned by [FlightRecorder.Save] when the previous
// save is more recent than the minimum interval.
var ErrRateLimited = errors.New("monitor: a trace was saved too recently")

// Trace file names are tracePrefix, the UTC time in traceTimeFormat (which
// sorts as it reads), "-", the sanitised reason, and traceSuffix.
const (
	tracePrefix     = "trace-"
	traceSuffix     = ".trace"
	traceTimeFormat = "20060102T150405.000Z"
	maxReasonLen    = 64
)

// FROptions configures a [FlightRecorder].
type FROptions struct {
	// Dir is where [FlightRecorder.Save] writes traces; it is created
	// (0700) if missing. Empty means no saving: WriteTo still works.
	Dir string
	// Window is how far back a trace reaches at least (the runtime's
	// MinAge; default 10s), as long as MaxBytes allows.
	Window time.Duration
	// MaxBytes bounds the recorded window (default 16 MiB); it wins over
	// Window. The runtime treats it as a hint.
	MaxBytes uint64
	// MinInterval is the least time between two saves (default 1m).
	MinInterval time.Duration
	// Keep is how many saved traces are kept in Dir; the oldest beyond it
	// are deleted after each save (default 10).
	Keep int
	// Now is the clock (default time.Now); it names the files and rate
	// limits the saves.
	Now func() time.Time
}

// FlightRecorder keeps the last seconds of the Go execution trace in
// memory (runtime/trace.FlightRecorder) so that a slow event can be
// explained after the fact: [FlightRecorder.Save] writes the window to a
// file that `go tool trace` reads. Recording costs a few percent of CPU
// while started. The runtime allows one flight recorder per process.
type FlightRecorder struct {
	dir         string
	minInterval time.Duration
	keep        int
	now         func() time.Time
	fr          *trace.FlightRecorder

	// wmu serialises snapshots (the runtime refuses a second concurrent
	// WriteTo instead of waiting for the first) and guards fr's state.
	wmu sync.Mutex
	// mu guards the rate limit.
	mu       sync.Mutex
	lastSave time.Time
	saved    bool
}

// NewFlightRecorder returns a flight recorder, not yet started, creating
// opts.Dir if it is set.
func NewFlightRecorder(opts FROptions) (*FlightRecorder, error) {
	defaults.Positive(&opts.Window, DefaultTraceWindow)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultTraceMaxBytes)
	defaults.Positive(&opts.MinInterval, DefaultTraceMinInterval)
	defaults.Positive(&opts.Keep, DefaultTraceKeep)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("monitor: trace directory: %w", err)
		}
	}
	return &FlightRecorder{
		dir:         opts.Dir,
		minInterval: opts.MinInterval,
		keep:        opts.Keep,
		now:         opts.Now,
		fr:          trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: opts.Window, MaxBytes: opts.MaxBytes}),
	}, nil
}

// Start starts recording. It fails if this or another flight recorder of
// the process is recording.
func (f *FlightRecorder) Start() error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if err := f.fr.Start(); err != nil {
		return fmt.Errorf("monitor: start flight recorder: %w", err)
	}
	return nil
}

// Stop stops recording and drops the window; it waits for a snapshot in
// progress.
func (f *FlightRecorder) Stop() {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.fr.Stop()
}

// Enabled reports whether the recorder is recording.
func (f *FlightRecorder) Enabled() bool {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	return f.fr.Enabled()
}

// WriteTo writes the current window to w as a trace file; it fails when
// the recorder is not recording. Concurrent calls take turns.
func (f *FlightRecorder) WriteTo(w io.Writer) (int64, error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if !f.fr.Enabled() {
		return 0, errors.New("monitor: the flight recorder is not recording")
	}
	n, err := f.fr.WriteTo(w)
	if err != nil {
		return n, fmt.Errorf("monitor: flight recorder snapshot: %w", err)
	}
	return n, nil
}

// Save writes the current window to a new file in the trace directory,
// named by the time and reason, and deletes the oldest traces beyond
// Keep. It returns [ErrRateLimited] when the previous save (successful or
// not) is more recent than MinInterval. On an error deleting old traces
// it returns the new file's path with the error.
func (f *FlightRecorder) Save(reason string) (string, error) {
	now, err := f.reserve()
	if err != nil {
		return "", err
	}
	return f.saveAt(now, reason)
}

// reserve takes the rate limit's slot for a save now, or returns
// [ErrRateLimited]; it is cheap, so that a caller can take the slot at
// once and write the trace in the background.
func (f *FlightRecorder) reserve() (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.saved && now.Sub(f.lastSave) < f.minInterval {
		return time.Time{}, ErrRateLimited
	}
	f.lastSave, f.saved = now, true
	if f.dir == "" {
		return time.Time{}, errors.New("monitor: no trace directory is configured")
	}
	return now, nil
}

// saveAt writes the trace of a reserved save and prunes old ones.
func (f *FlightRecorder) saveAt(now time.Time, reason string) (string, error) {
	path, err := f.write(now, reason)
	if err != nil {
		return "", err
	}
	if err := f.prune(); err != nil {
		return path, err
	}
	return path, nil
}

// write saves the window under a name that no other trace has.
func (f *FlightRecorder) write(now time.Time, reason string) (string, error) {
	base := tracePrefix + now.UTC().Format(traceTimeFormat) + "-" + sanitizeReason(reason)
	var file *os.File
	var path string
	for i := 0; ; i++ {
		path = filepath.Join(f.dir, base+traceSuffix)
		if i > 0 {
			path = filepath.Join(f.dir, fmt.Sprintf("%s-%d%s", base, i, traceSuffix))
		}
		var err error
		file, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || i >= 100 {
			return "", fmt.Errorf("monitor: create trace file: %w", err)
		}
	}
	_, err := f.WriteTo(file)
	if cerr := file.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("monitor: write trace file: %w", cerr)
	}
	if err != nil {
		_ = os.Remove(path)
		return "", err
	}
	return path, nil
}

// prune deletes the oldest traces beyond keep. Only files named like ours
// are considered.
func (f *FlightRecorder) prune() error {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return fmt.Errorf("monitor: list traces: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, tracePrefix) && strings.HasSuffix(n, traceSuffix) {
			names = append(names, n)
		}
	}
	if len(names) <= f.keep {
		return nil
	}
	// Names start with a fixed-width UTC time, so they sort by age.
	slices.Sort(names)
	var errs []error
	for _, n := range names[:len(names)-f.keep] {
		if err := os.Remove(filepath.Join(f.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("monitor: delete old traces: %w", err)
	}
	return nil
}

// sanitizeReason keeps a reason's ASCII letters, digits, dots and
// underscores and turns every other run of characters into one dash, so
// that it is safe in a file name on any system: at most maxReasonLen
// bytes, never empty, never starting or ending with a dot or dash.
func sanitizeReason(reason string) string {
	var b strings.Builder
	dash := false
	for _, r := range reason {
		if b.Len() >= 2*maxReasonLen {
			break
		}
		if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	s := strings.Trim(b.String(), ".-")
	if len(s) > maxReasonLen {
		s = strings.TrimRight(s[:maxReasonLen], ".-")
	}
	if s == "" {
		return "event"
	}
	return s
}
