package monitor

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

func TestSlowRequest(t *testing.T) {
	t.Parallel()
	var logs testutil.Logs
	s := NewSlowLog(SlowOptions{Logger: logs.Logger()})
	ctx := context.Background()
	s.Request(ctx, "r1", "GET", "GET /api/v1/jobs", 200, time.Second) // at the threshold: not slow
	s.Request(ctx, "r2", "POST", "POST /api/v1/jobs", 201, 1500*time.Millisecond)
	got := logs.Records(t, testutil.Message("slow request"))
	if len(got) != 1 {
		t.Fatalf("got %d slow request lines: %v", len(got), got)
	}
	r := got[0]
	if r["level"] != "WARN" || r["request_id"] != "r2" || r["method"] != "POST" || r["route"] != "POST /api/v1/jobs" ||
		r["status"] != 201.0 || r["duration"] != "1.5s" || r["duration_ms"] != 1500.0 || r["threshold_ms"] != 1000.0 {
		t.Errorf("line: %v", r)
	}
}

func slowJobEvent(kind queue.EventKind, run time.Duration) queue.Event {
	return queue.Event{Kind: kind, RunTime: run, Job: &queue.Job{ID: 77, Kind: "report", Queue: "batch", Attempt: 2}}
}

func TestSlowJob(t *testing.T) {
	t.Parallel()
	var logs testutil.Logs
	s := NewSlowLog(SlowOptions{Logger: logs.Logger(), JobThreshold: 10 * time.Second})
	s.Job(slowJobEvent(queue.EventStarted, 0))
	s.Job(slowJobEvent(queue.EventCompleted, 10*time.Second))
	s.Job(queue.Event{Kind: queue.EventCompleted, RunTime: time.Hour}) // no job: ignored
	s.Job(slowJobEvent(queue.EventRetried, 12*time.Second))
	got := logs.Records(t, testutil.Message("slow job"))
	if len(got) != 1 {
		t.Fatalf("got %d slow job lines: %v", len(got), got)
	}
	r := got[0]
	if r["level"] != "WARN" || r["job_id"] != 77.0 || r["kind"] != "report" || r["queue"] != "batch" || r["attempt"] != 2.0 ||
		r["outcome"] != "retried" || r["run_time"] != "12s" || r["run_time_ms"] != 12000.0 || r["threshold_ms"] != 10000.0 {
		t.Errorf("line: %v", r)
	}
}

func TestSlowLogDefaultsAndDisabled(t *testing.T) {
	t.Parallel()
	var logs testutil.Logs
	def := NewSlowLog(SlowOptions{Logger: logs.Logger()})
	def.Job(slowJobEvent(queue.EventCompleted, time.Minute))
	if n := len(logs.Records(t, testutil.Message("slow job"))); n != 0 {
		t.Errorf("a job of exactly the default threshold logged %d lines", n)
	}
	def.Job(slowJobEvent(queue.EventCompleted, time.Minute+time.Millisecond))
	if n := len(logs.Records(t, testutil.Message("slow job"))); n != 1 {
		t.Errorf("a job over the default threshold logged %d lines", n)
	}

	var quiet testutil.Logs
	off := NewSlowLog(SlowOptions{Logger: quiet.Logger(), RequestThreshold: Disabled, JobThreshold: Disabled})
	off.Request(context.Background(), "r", "GET", "GET /x", 200, time.Hour)
	off.Job(slowJobEvent(queue.EventFailed, 24*time.Hour))
	if n := len(quiet.Records(t, testutil.Message("slow request"))) + len(quiet.Records(t, testutil.Message("slow job"))); n != 0 {
		t.Errorf("disabled thresholds logged %d lines", n)
	}
	// No logger, no recorder: nothing to do, nothing to panic about.
	NewSlowLog(SlowOptions{}).Request(context.Background(), "", "", "", 0, time.Hour)
}

func TestSlowEventsSaveTraces(t *testing.T) {
	t.Parallel()
	var logs testutil.Logs
	dir := t.TempDir()
	clk := newClock()
	rec := startRecorder(t, FROptions{Dir: dir, Now: clk.Now})
	s := NewSlowLog(SlowOptions{Logger: logs.Logger(), Recorder: rec, JobThreshold: time.Second})
	busy()
	s.Request(context.Background(), "req-1", "GET", "GET /api/v1/jobs/{id}", 200, 2*time.Second)
	// Within the recorder's MinInterval: logged, no second trace.
	s.Request(context.Background(), "req-2", "GET", "GET /api/v1/jobs/{id}", 200, 2*time.Second)
	s.Wait()
	saved := logs.Records(t, testutil.Message("slow-event trace saved"))
	if len(saved) != 1 || saved[0]["request_id"] != "req-1" || saved[0]["reason"] != "slow-request GET GET /api/v1/jobs/{id}" {
		t.Fatalf("saved lines: %v", saved)
	}
	path, _ := saved[0]["path"].(string)
	if filepath.Dir(path) != dir || !strings.Contains(path, "slow-request-GET-GET-api-v1-jobs-id") {
		t.Errorf("path %q", path)
	}
	checkTrace(t, path)
	if n := len(logs.Records(t, testutil.Message("slow request"))); n != 2 {
		t.Errorf("%d slow request lines", n)
	}

	clk.Advance(DefaultTraceMinInterval)
	s.Job(slowJobEvent(queue.EventFailed, 2*time.Second))
	s.Wait()
	saved = logs.Records(t, testutil.Message("slow-event trace saved"))
	if len(saved) != 2 || saved[1]["job_id"] != "77" || !strings.Contains(saved[1]["path"].(string), "slow-job-report") {
		t.Fatalf("saved lines: %v", saved)
	}

	clk.Advance(DefaultTraceMinInterval)
	s.Lag(Snapshot{})
	s.Wait()
	saved = logs.Records(t, testutil.Message("slow-event trace saved"))
	if len(saved) != 3 || saved[2]["reason"] != "sched-lag" || !strings.Contains(saved[2]["path"].(string), "sched-lag") {
		t.Fatalf("saved lines: %v", saved)
	}
	if n := len(traceFiles(t, dir)); n != 3 {
		t.Errorf("%d trace files", n)
	}

	// A recorder that is not recording: the failure is logged.
	rec.Stop()
	clk.Advance(DefaultTraceMinInterval)
	s.Lag(Snapshot{})
	s.Wait()
	if failed := logs.Records(t, testutil.Message("save slow-event trace")); len(failed) != 1 {
		t.Errorf("failure lines: %v", failed)
	}
}

// SlowLog.Lag fits the monitor's OnLag hook.
var _ = Options{OnLag: (*SlowLog)(nil).Lag}
