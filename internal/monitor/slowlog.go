package monitor

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// The defaults of [SlowOptions].
const (
	DefaultSlowRequest = time.Second
	DefaultSlowJob     = time.Minute
)

// SlowOptions configures a [SlowLog].
type SlowOptions struct {
	// RequestThreshold is the duration above which a request is slow.
	// Zero means 1s; [Disabled] turns request logging off.
	RequestThreshold time.Duration
	// JobThreshold is the run time above which a job attempt is slow.
	// Zero means 1m; [Disabled] turns job logging off.
	JobThreshold time.Duration
	// Logger receives the "slow request" and "slow job" warnings
	// (default: discard).
	Logger *slog.Logger
	// Recorder, if set, saves a trace of the seconds before each slow
	// event (rate-limited by the recorder).
	Recorder *FlightRecorder
}

// SlowLog logs requests and jobs that took longer than their thresholds
// and has the flight recorder, if any, save a trace of them. Its methods
// are safe for concurrent use and never block on the trace, which is
// written in the background.
type SlowLog struct {
	request time.Duration
	job     time.Duration
	log     *slog.Logger
	rec     *FlightRecorder
	saves   sync.WaitGroup
}

// NewSlowLog returns a slow-event log.
func NewSlowLog(opts SlowOptions) *SlowLog {
	s := &SlowLog{request: opts.RequestThreshold, job: opts.JobThreshold, log: opts.Logger, rec: opts.Recorder}
	if s.request == 0 {
		s.request = DefaultSlowRequest
	}
	if s.job == 0 {
		s.job = DefaultSlowJob
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Request logs the request as slow when d is over the request threshold:
// call it once per request, after the handler, with the matched route
// pattern (never the raw path, which may hold ids or secrets).
func (s *SlowLog) Request(ctx context.Context, requestID, method, route string, status int, d time.Duration) {
	if s.request < 0 || d <= s.request {
		return
	}
	s.log.WarnContext(ctx, "slow request",
		"request_id", requestID,
		"method", method,
		"route", route,
		"status", status,
		"duration", d.String(),
		"duration_ms", msDuration(d),
		"threshold_ms", msDuration(s.request))
	s.saveTrace("slow-request "+method+" "+route, "request_id", requestID)
}

// Job logs a job attempt as slow when its run time is over the job
// threshold. Subscribe it to the engine's events: only outcome events
// carry a run time, so the others are ignored.
func (s *SlowLog) Job(e queue.Event) {
	if s.job < 0 || e.RunTime <= s.job || e.Job == nil {
		return
	}
	s.log.Warn("slow job",
		"job_id", e.Job.ID,
		"kind", e.Job.Kind,
		"queue", e.Job.Queue,
		"attempt", e.Job.Attempt,
		"outcome", string(e.Kind),
		"run_time", e.RunTime.String(),
		"run_time_ms", msDuration(e.RunTime),
		"threshold_ms", msDuration(s.job))
	s.saveTrace("slow-job "+e.Job.Kind, "job_id", strconv.FormatInt(e.Job.ID, 10))
}

// Lag has the flight recorder save a trace of a window of high scheduler
// latency; the monitor has logged it already. Use it as
// [Options].OnLag.
func (s *SlowLog) Lag(Snapshot) {
	s.saveTrace("sched-lag", "", "")
}

// Wait waits for the traces being saved; call it at shutdown, before
// stopping the recorder.
func (s *SlowLog) Wait() { s.saves.Wait() }

// saveTrace has the recorder, if any, save a trace unless it saved one
// too recently. The slot is taken at once, so the first of a burst of
// slow events gets the trace; the file is written in the background. The
// outcome is logged with the event's id (idKey=id) so that the lines can
// be joined.
func (s *SlowLog) saveTrace(reason, idKey, id string) {
	if s.rec == nil {
		return
	}
	attrs := []any{"reason", reason}
	if idKey != "" {
		attrs = append(attrs, idKey, id)
	}
	now, err := s.rec.reserve()
	switch {
	case errors.Is(err, ErrRateLimited):
		return
	case err != nil:
		s.log.Warn("save slow-event trace", append(attrs, "err", err)...)
		return
	}
	s.saves.Go(func() {
		path, err := s.rec.saveAt(now, reason)
		if path == "" {
			s.log.Warn("save slow-event trace", append(attrs, "err", err)...)
			return
		}
		if err != nil {
			s.log.Warn("delete old traces", "err", err)
		}
		s.log.Info("slow-event trace saved", append(attrs, "path", path)...)
	})
}

// msDuration converts d to milliseconds.
func msDuration(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
