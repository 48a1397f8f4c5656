// Package monitor watches the Go runtime and slow work.
//
// A [Monitor] samples runtime/metrics (scheduler latency, heap, GC,
// goroutines) every interval and warns, with the busiest goroutine
// stacks, when the scheduler latency of the last window crosses a
// threshold: the Go form of "event loop lag". Its latest [Snapshot] is
// served as GET /api/v1/runtime through [Monitor.Module].
//
// A [SlowLog] logs requests and jobs that took longer than their
// thresholds and, with a [FlightRecorder] attached, saves an execution
// trace of the seconds before the slow event (rate-limited, with a
// bounded number of files kept).
package monitor
