package tracing

import (
	"context"
	"net/http"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kilnhq/kiln/internal/httpapi"
)

// recorded is tracing on, sampling everything, into memory.
type recorded struct {
	*Tracing
	exp *tracetest.InMemoryExporter
}

// newRecorded sets up tracing that records every span in memory, shut
// down when the test ends.
func newRecorded(t testing.TB) recorded {
	t.Helper()
	return newRecordedWith(t, sdktrace.AlwaysSample())
}

// newRecordedWith is newRecorded with sampler s.
func newRecordedWith(t testing.TB, s sdktrace.Sampler) recorded {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := Setup(context.Background(), Options{Exporter: exp, Sampler: s, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Fatal("tracing with an exporter is off (is OTEL_SDK_DISABLED set?)")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return recorded{Tracing: tr, exp: exp}
}

// spans flushes and returns every span ended so far.
func (r recorded) spans(t testing.TB) tracetest.SpanStubs {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	return r.exp.GetSpans()
}

// named returns the spans called name.
func named(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// one returns the only span called name, failing the test otherwise.
func one(t testing.TB, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	got := named(spans, name)
	if len(got) != 1 {
		var names []string
		for _, s := range spans {
			names = append(names, s.Name)
		}
		t.Fatalf("%d spans named %q; all spans: %q", len(got), name, names)
	}
	return got[0]
}

// attr returns the value of attribute key of s as a string, and whether
// s has it.
func attr(s tracetest.SpanStub, key string) (string, bool) {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

// Fixed ids of an incoming trace.
var (
	testTraceID = trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	testSpanID  = trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

// testTraceparent is the traceparent header of the incoming trace,
// sampled.
const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// waitFor polls cond every few milliseconds until it is true, failing
// the test with what if d passes first.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testModule serves routes that fail, panic and stream, for the
// middleware's tests.
type testModule struct{}

func (testModule) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Pattern: "GET /api/v1/tracetest/items/{id}", Handler: func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteJSON(w, r, http.StatusOK, map[string]string{"id": r.PathValue("id")})
		}},
		{Pattern: "GET /api/v1/tracetest/fail", Handler: func(w http.ResponseWriter, r *http.Request) {
			httpapi.WriteError(w, r, errBoom)
		}},
		{Pattern: "GET /api/v1/tracetest/panic", Handler: func(http.ResponseWriter, *http.Request) {
			panic("boom")
		}},
		{Pattern: "GET /api/v1/tracetest/stream", Handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte("part"))
			if err := http.NewResponseController(w).Flush(); err != nil {
				httpapi.Logger(r.Context()).Error("flush", "err", err)
				_, _ = w.Write([]byte(" flush failed"))
			}
		}},
		{Pattern: "GET /api/v1/tracetest/silent", Handler: func(http.ResponseWriter, *http.Request) {}},
	}
}

func (testModule) OpenAPI() []byte { return []byte(`{"paths":{}}`) }
