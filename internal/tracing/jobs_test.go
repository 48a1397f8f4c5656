package tracing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// engine is a started client on a fresh database with r's hooks and the
// test kinds, and the API on it with r's middleware.
type engine struct {
	c       *queue.Client
	srv     *httptest.Server
	handled chan trace.SpanContext // what the traced kind's handler saw
}

func newEngine(t *testing.T, e *dbtest.Env, r recorded) *engine {
	t.Helper()
	en := &engine{handled: make(chan trace.SpanContext, 10)}
	once := queue.WithRetry(queue.RetryPolicy{MaxAttempts: 1})
	w := queue.NewWorkers()
	w.HandleFunc("traced", func(ctx context.Context, _ *queue.Job) error {
		en.handled <- trace.SpanContextFromContext(ctx)
		return nil
	})
	w.HandleFunc("fails", func(context.Context, *queue.Job) error { return errors.New("card declined") }, once)
	var snoozed atomic.Bool
	w.HandleFunc("snoozes", func(context.Context, *queue.Job) error {
		if snoozed.CompareAndSwap(false, true) {
			return fmt.Errorf("not yet: %w", queue.Snooze(0))
		}
		return nil
	})
	w.HandleFunc("cancels", func(context.Context, *queue.Job) error { return queue.Cancel(errors.New("order gone")) })
	w.HandleFunc("panics", func(context.Context, *queue.Job) error { panic("handler bug") }, once)
	en.c = e.Client(t, queue.Config{
		Workers: w, Queues: map[string]queue.QueueConfig{"default": {MaxWorkers: 4}},
		PollInterval: 20 * time.Millisecond,
		InsertHook:   r.InsertHook(), WorkHook: r.WorkHook(),
	}, true)
	a := testutil.Must(httpapi.New(httpapi.Config{Jobs: en.c, Middleware: []func(http.Handler) http.Handler{r.Middleware()}}))(t)
	en.srv = httptest.NewServer(a)
	t.Cleanup(en.srv.Close)
	return en
}

// wait waits until job id reaches state, and returns it.
func (en *engine) wait(t *testing.T, id int64, state queue.JobState) *queue.Job {
	t.Helper()
	var j *queue.Job
	waitFor(t, 30*time.Second, fmt.Sprintf("job %d to be %s", id, state), func() bool {
		var err error
		j, err = en.c.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return j.State == state
	})
	return j
}

// TestRequestTraceReachesJob: a job enqueued by a request runs in a span
// whose parent is the request's span, in the trace the request's caller
// started; the handler sees the job's span.
func TestRequestTraceReachesJob(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		r := newRecorded(t)
		en := newEngine(t, e, r)
		req, _ := http.NewRequest("POST", en.srv.URL+"/api/v1/jobs", strings.NewReader(`{"kind":"traced"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", testTraceparent)
		resp, err := en.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var created struct {
			ID int64 `json:"id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&created)
		resp.Body.Close()
		if resp.StatusCode != 201 || err != nil {
			t.Fatalf("POST /api/v1/jobs: %d %v", resp.StatusCode, err)
		}
		j := en.wait(t, created.ID, queue.StateCompleted)
		seen := <-en.handled

		spans := r.spans(t)
		srvSpan := one(t, spans, "POST /api/v1/jobs")
		job := one(t, spans, "job traced")
		if srvSpan.SpanContext.TraceID() != testTraceID || srvSpan.Parent.SpanID() != testSpanID {
			t.Errorf("request span in trace %s under %s, want %s under %s", srvSpan.SpanContext.TraceID(), srvSpan.Parent.SpanID(), testTraceID, testSpanID)
		}
		if job.SpanContext.TraceID() != testTraceID || job.Parent.SpanID() != srvSpan.SpanContext.SpanID() || !job.Parent.IsRemote() {
			t.Errorf("job span in trace %s under %s, want %s under the request span %s", job.SpanContext.TraceID(), job.Parent.SpanID(), testTraceID, srvSpan.SpanContext.SpanID())
		}
		if job.SpanKind != trace.SpanKindConsumer || job.Status.Code != codes.Unset {
			t.Errorf("job span kind %s status %v", job.SpanKind, job.Status)
		}
		for k, want := range map[string]string{
			"kiln.job.id": fmt.Sprint(created.ID), "kiln.job.kind": "traced", "kiln.job.queue": "default",
			"kiln.job.attempt": "1", "kiln.job.max_attempts": fmt.Sprint(j.MaxAttempts), "kiln.job.outcome": "completed",
		} {
			if got, _ := attr(job, k); got != want {
				t.Errorf("job span %s=%q, want %q", k, got, want)
			}
		}
		if !seen.Equal(job.SpanContext) {
			t.Errorf("the handler saw span %s, want the job's %s", seen.SpanID(), job.SpanContext.SpanID())
		}
		// PostgreSQL stores metadata as jsonb, which respaces it.
		var md map[string]map[string]string
		want := fmt.Sprintf("00-%s-%s-01", testTraceID, srvSpan.SpanContext.SpanID())
		if err := json.Unmarshal(j.Metadata, &md); err != nil || len(md) != 1 || len(md["trace"]) != 1 || md["trace"]["traceparent"] != want {
			t.Errorf("job metadata %s (%v), want only the trace key with traceparent %s", j.Metadata, err, want)
		}
	})
}

// TestJobOutcomes: failures, cancels and panics set the job span's status
// to Error; a snooze does not; a job inserted outside any span starts a
// trace of its own; existing metadata keeps its keys.
func TestJobOutcomes(t *testing.T) {
	t.Parallel()
	r := newRecorded(t)
	en := newEngine(t, dbtest.SQLite(t), r)
	ctx, parent := r.tracer.Start(context.Background(), "enqueue")
	insert := func(ctx context.Context, kind string, md string) *queue.Job {
		t.Helper()
		p := queue.InsertParams{Kind: kind}
		if md != "" {
			p.Opts.Metadata = json.RawMessage(md)
		}
		res, err := en.c.Insert(ctx, p)
		if err != nil {
			t.Fatalf("insert %s: %v", kind, err)
		}
		return res.Job
	}
	fails := insert(ctx, "fails", `{"tag":"x<y","n":[1,2]}`)
	snoozes := insert(ctx, "snoozes", `[1,2]`)
	cancels := insert(ctx, "cancels", "")
	panics := insert(ctx, "panics", "")
	root := insert(context.Background(), "traced", `{"tag":"plain"}`)
	parent.End()

	var md map[string]json.RawMessage
	if err := json.Unmarshal(fails.Metadata, &md); err != nil || string(md["tag"]) != `"x<y"` || string(md["n"]) != `[1,2]` || md["trace"] == nil {
		t.Errorf("merged metadata %s (%v)", fails.Metadata, err)
	}
	if string(snoozes.Metadata) != `[1,2]` {
		t.Errorf("non-object metadata became %s", snoozes.Metadata)
	}
	if string(root.Metadata) != `{"tag":"plain"}` {
		t.Errorf("metadata of a job inserted outside a span became %s", root.Metadata)
	}
	en.wait(t, fails.ID, queue.StateFailed)
	en.wait(t, snoozes.ID, queue.StateCompleted)
	en.wait(t, cancels.ID, queue.StateCancelled)
	en.wait(t, panics.ID, queue.StateFailed)
	en.wait(t, root.ID, queue.StateCompleted)
	<-en.handled

	spans := r.spans(t)
	for _, c := range []struct {
		name, outcome string
		code          codes.Code
		underParent   bool
	}{
		{"job fails", "failed", codes.Error, true},
		{"job cancels", "cancelled", codes.Error, true},
		{"job panics", "panicked", codes.Error, true},
	} {
		s := one(t, spans, c.name)
		if got, _ := attr(s, "kiln.job.outcome"); got != c.outcome || s.Status.Code != c.code {
			t.Errorf("%s: outcome %q status %v, want %q %v", c.name, got, s.Status.Code, c.outcome, c.code)
		}
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: parent %s, want the inserting span %s", c.name, s.Parent.SpanID(), parent.SpanContext().SpanID())
		}
	}
	if s := one(t, spans, "job fails"); len(s.Events) != 1 || s.Events[0].Name != "exception" || s.Status.Description != "card declined" {
		t.Errorf("failed attempt: events %+v status %+v", s.Events, s.Status)
	}
	sn := named(spans, "job snoozes")
	if len(sn) != 2 {
		t.Fatalf("%d spans for the snoozed job, want 2 attempts", len(sn))
	}
	for _, s := range sn {
		if s.Status.Code != codes.Unset {
			t.Errorf("snoozed job span status %v", s.Status)
		}
		if s.Parent.IsValid() {
			t.Errorf("a job with non-object metadata has parent %s", s.Parent.SpanID())
		}
	}
	if got, _ := attr(sn[0], "kiln.job.outcome"); got != "snoozed" {
		t.Errorf("first attempt of the snoozed job: outcome %q", got)
	}
	if s := one(t, spans, "job traced"); s.Parent.IsValid() || s.SpanContext.TraceID() == parent.SpanContext().TraceID() {
		t.Errorf("a job inserted outside any span has parent %s", s.Parent.SpanID())
	}
}
