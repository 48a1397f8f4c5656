package tracing

import (
	"bytes"
	"context"
	"encoding/json"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/kilnhq/kiln/queue"
)

// MetadataKey is the key of a job's metadata object that holds the trace
// context of the code that inserted it:
// {"trace":{"traceparent":"00-…","tracestate":"…"}}.
const MetadataKey = "trace"

// Attributes of a job attempt's span.
const (
	JobIDKey          = attribute.Key("kiln.job.id")
	JobKindKey        = attribute.Key("kiln.job.kind")
	JobQueueKey       = attribute.Key("kiln.job.queue")
	JobAttemptKey     = attribute.Key("kiln.job.attempt")
	JobMaxAttemptsKey = attribute.Key("kiln.job.max_attempts")
	// JobOutcomeKey is what the attempt came to: completed, failed,
	// snoozed, cancelled or panicked.
	JobOutcomeKey = attribute.Key("kiln.job.outcome")
)

// traceContext is the propagator of job metadata: W3C trace context only
// (baggage is not carried into jobs).
var traceContext propagation.TraceContext

// InsertHook returns the hook for queue.Config.InsertHook, or nil when
// tracing is off. When the inserting call's context holds a valid span
// context (the request's span, say), the hook stores it in the job's
// metadata under [MetadataKey]: as the whole metadata when there is
// none, added to it when it is a JSON object (other keys are kept, an
// older trace key is replaced); metadata of any other kind, and invalid
// JSON, are left alone.
func (t *Tracing) InsertHook() func(ctx context.Context, p *queue.InsertParams) {
	if !t.Enabled() {
		return nil
	}
	return insertHook
}

func insertHook(ctx context.Context, p *queue.InsertParams) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	if md, ok := withTrace(p.Opts.Metadata, sc); ok {
		p.Opts.Metadata = md
	}
}

// carrier is the JSON form of a trace context in job metadata.
type carrier struct {
	Traceparent string `json:"traceparent"`
	Tracestate  string `json:"tracestate,omitempty"`
}

// withTrace returns metadata md with sc under [MetadataKey], and false
// when md is neither empty (nothing, blanks or null) nor a JSON object.
func withTrace(md json.RawMessage, sc trace.SpanContext) (json.RawMessage, bool) {
	mc := propagation.MapCarrier{}
	traceContext.Inject(trace.ContextWithSpanContext(context.Background(), sc), mc)
	tc, err := json.Marshal(carrier{Traceparent: mc["traceparent"], Tracestate: mc["tracestate"]})
	if err != nil {
		return nil, false
	}
	trimmed := bytes.TrimSpace(md)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return json.RawMessage(`{"` + MetadataKey + `":` + string(tc) + `}`), true
	}
	if trimmed[0] != '{' || !json.Valid(trimmed) {
		return nil, false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &obj); err != nil {
		return nil, false
	}
	obj[MetadataKey] = tc
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep the other values as they were written
	if err := enc.Encode(obj); err != nil {
		return nil, false
	}
	return json.RawMessage(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), true
}

// parentFrom returns the span context stored in a job's metadata, or an
// invalid one when there is none (or it cannot be read).
func parentFrom(md json.RawMessage) trace.SpanContext {
	if tp, ok := canonicalTraceparent(md); ok {
		return trace.SpanContextFromContext(traceContext.Extract(context.Background(), traceparentCarrier(tp)))
	}
	return parentFromJSON(md)
}

// parentFromJSON is parentFrom for metadata of any form.
func parentFromJSON(md json.RawMessage) trace.SpanContext {
	trimmed := bytes.TrimSpace(md)
	if len(trimmed) == 0 || trimmed[0] != '{' || !bytes.Contains(trimmed, []byte(`"`+MetadataKey+`"`)) {
		return trace.SpanContext{}
	}
	var v struct {
		Trace *carrier `json:"trace"`
	}
	if err := json.Unmarshal(trimmed, &v); err != nil || v.Trace == nil {
		return trace.SpanContext{}
	}
	mc := propagation.MapCarrier{"traceparent": v.Trace.Traceparent}
	if v.Trace.Tracestate != "" {
		mc["tracestate"] = v.Trace.Tracestate
	}
	return trace.SpanContextFromContext(traceContext.Extract(context.Background(), mc))
}

// The metadata the insert hook writes when there was none, as stored by
// SQLite and as PostgreSQL's jsonb gives it back: read without a JSON
// decoder, which would cost more than the rest of the hook.
var (
	canonicalPrefixes = [][]byte{[]byte(`{"trace":{"traceparent":"`), []byte(`{"trace": {"traceparent": "`)}
	canonicalSuffix   = []byte(`"}}`)
)

// traceparentLen is the length of a version 00 traceparent.
const traceparentLen = 55

// canonicalTraceparent returns the traceparent of metadata that holds
// only it, in one of the canonical forms; ok is false for anything else.
func canonicalTraceparent(md []byte) (string, bool) {
	for _, p := range canonicalPrefixes {
		if len(md) == len(p)+traceparentLen+len(canonicalSuffix) && bytes.HasPrefix(md, p) && bytes.HasSuffix(md, canonicalSuffix) {
			tp := md[len(p) : len(p)+traceparentLen]
			if bytes.IndexByte(tp, '"') < 0 && bytes.IndexByte(tp, '\\') < 0 {
				return string(tp), true
			}
		}
	}
	return "", false
}

// traceparentCarrier is a propagation.TextMapCarrier holding only a
// traceparent, without a map.
type traceparentCarrier string

// Get returns the traceparent, and "" for any other key.
func (c traceparentCarrier) Get(key string) string {
	if key == "traceparent" {
		return string(c)
	}
	return ""
}

// Set does nothing: the carrier is only read.
func (traceparentCarrier) Set(string, string) {}

// Keys lists the one key the carrier holds.
func (traceparentCarrier) Keys() []string { return []string{"traceparent"} }

// WorkHook returns the hook for queue.Config.WorkHook, or nil when
// tracing is off. Each attempt runs in a span of kind Consumer named
// "job <kind>", child of the trace context in the job's metadata (see
// [Tracing.InsertHook]), with the job's id, kind, queue, attempt and
// maximum attempts, and kiln.job.outcome (completed, failed, snoozed,
// cancelled or panicked), set when the attempt ends. A returned error is
// recorded and sets the span's status to Error, except a snooze
// (queue.Snooze), which is no failure; a panic sets it too (the engine
// turns the panic into a failed attempt).
func (t *Tracing) WorkHook() func(ctx context.Context, job *queue.Job, work func(context.Context) error) error {
	if !t.Enabled() {
		return nil
	}
	return t.work
}

// consumerSpan are the options of an attempt's span, made once.
var consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}

func (t *Tracing) work(ctx context.Context, job *queue.Job, work func(context.Context) error) error {
	if sc := parentFrom(job.Metadata); sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	ctx, span := t.tracer.Start(ctx, "job "+job.Kind, consumerSpan...)
	returned := false
	defer func() {
		if !returned {
			// The handler panicked; the engine recovers it into a failed
			// attempt, with the stack as it was.
			endJob(span, job, "panicked", codes.Error, "panic", nil)
		}
	}()
	err := work(ctx)
	returned = true
	switch {
	case !span.IsRecording():
		span.End()
	case err == nil:
		endJob(span, job, "completed", codes.Unset, "", nil)
	case queue.IsSnooze(err):
		endJob(span, job, "snoozed", codes.Unset, "", nil)
	case queue.IsCancel(err):
		endJob(span, job, "cancelled", codes.Error, err.Error(), err)
	default:
		endJob(span, job, "failed", codes.Error, err.Error(), err)
	}
	return err
}

// endJob sets the attributes of an attempt's span in one call (the
// cheapest way to set them), records err if any, and ends the span.
func endJob(span trace.Span, job *queue.Job, outcome string, code codes.Code, desc string, err error) {
	attrs := [...]attribute.KeyValue{
		JobIDKey.Int64(job.ID),
		JobKindKey.String(job.Kind),
		JobQueueKey.String(job.Queue),
		JobAttemptKey.Int(job.Attempt),
		JobMaxAttemptsKey.Int(job.MaxAttempts),
		JobOutcomeKey.String(outcome),
	}
	span.SetAttributes(attrs[:]...)
	if err != nil {
		span.RecordError(err)
	}
	if code != codes.Unset {
		span.SetStatus(code, desc)
	}
	span.End()
}
