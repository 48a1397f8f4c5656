package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/kilnhq/kiln/internal/testutil"
)

// env is a fake environment for readEnv.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func TestReadEnv(t *testing.T) {
	t.Parallel()
	ep := "http://collector:4318"
	for _, c := range []struct {
		name       string
		env        env
		configured bool
		enabled    bool
		sampler    string
		err        string
	}{
		{name: "nothing set", env: env{}},
		{name: "endpoint", env: env{EnvEndpoint: ep}, enabled: true, sampler: "parentbased_always_on"},
		{name: "traces endpoint", env: env{EnvTracesEndpoint: ep + "/v1/traces"}, enabled: true, sampler: "parentbased_always_on"},
		{name: "blank endpoint", env: env{EnvEndpoint: "  "}},
		{name: "endpoint without scheme", env: env{EnvEndpoint: "collector:4318"}, err: "OTEL_EXPORTER_OTLP_ENDPOINT: \"collector:4318\" is not an http:// or https:// URL"},
		{name: "traces endpoint without host", env: env{EnvEndpoint: ep, EnvTracesEndpoint: "http:///v1/traces"}, err: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{name: "configured in code", env: env{}, configured: true, enabled: true, sampler: "parentbased_always_on"},
		{name: "sdk disabled", env: env{EnvEndpoint: ep, EnvSDKDisabled: "TRUE"}},
		{name: "sdk disabled in code too", env: env{EnvSDKDisabled: "true"}, configured: true},
		{name: "sdk not disabled", env: env{EnvEndpoint: ep, EnvSDKDisabled: "false"}, enabled: true, sampler: "parentbased_always_on"},
		{name: "exporter none", env: env{EnvEndpoint: ep, EnvTracesExporter: "none"}},
		{name: "exporter otlp", env: env{EnvEndpoint: ep, EnvTracesExporter: "otlp"}, enabled: true, sampler: "parentbased_always_on"},
		{name: "exporter zipkin", env: env{EnvEndpoint: ep, EnvTracesExporter: "zipkin"}, err: "OTLP only"},
		{name: "grpc", env: env{EnvEndpoint: ep, EnvProtocol: "grpc"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: kiln speaks OTLP over HTTP only"},
		{name: "traces grpc", env: env{EnvEndpoint: ep, EnvProtocol: "http/protobuf", EnvTracesProtocol: "grpc"}, err: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"},
		{name: "traces protocol wins", env: env{EnvEndpoint: ep, EnvProtocol: "grpc", EnvTracesProtocol: "http/protobuf"}, enabled: true, sampler: "parentbased_always_on"},
		{name: "grpc while off", env: env{EnvProtocol: "grpc"}},
		{name: "http/json", env: env{EnvEndpoint: ep, EnvProtocol: "http/json"}, enabled: true, sampler: "parentbased_always_on"},
		{name: "unknown protocol", env: env{EnvEndpoint: ep, EnvProtocol: "udp"}, err: `"udp": kiln speaks OTLP over HTTP`},
		{name: "always_off", env: env{EnvEndpoint: ep, EnvTracesSampler: "always_off"}, enabled: true, sampler: "always_off"},
		{name: "ratio", env: env{EnvEndpoint: ep, EnvTracesSampler: "parentbased_traceidratio", EnvTracesSamplerArg: "0.25"}, enabled: true, sampler: "parentbased_traceidratio=0.25"},
		{name: "ratio default", env: env{EnvEndpoint: ep, EnvTracesSampler: "TraceIdRatio"}, enabled: true, sampler: "traceidratio=1"},
		{name: "ratio too big", env: env{EnvEndpoint: ep, EnvTracesSampler: "traceidratio", EnvTracesSamplerArg: "1.5"}, err: "from 0 to 1"},
		{name: "ratio NaN", env: env{EnvEndpoint: ep, EnvTracesSampler: "traceidratio", EnvTracesSamplerArg: "NaN"}, err: "from 0 to 1"},
		{name: "ratio word", env: env{EnvEndpoint: ep, EnvTracesSampler: "traceidratio", EnvTracesSamplerArg: "half"}, err: "from 0 to 1"},
		{name: "unknown sampler", env: env{EnvEndpoint: ep, EnvTracesSampler: "jaeger_remote"}, err: "kiln supports always_on"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := readEnv(c.env.get, c.configured)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.enabled != c.enabled || got.samplerName != c.sampler {
				t.Errorf("enabled %v sampler %q, want %v %q", got.enabled, got.samplerName, c.enabled, c.sampler)
			}
			if got.enabled && got.sampler == nil {
				t.Error("enabled without a sampler")
			}
		})
	}
}

// TestSetupOff: without an endpoint Setup returns tracing whose hooks are
// nil and whose client transport is the one given; nothing is started.
// (Not parallel: it sets the process environment.)
func TestSetupOff(t *testing.T) {
	for _, k := range []string{EnvEndpoint, EnvTracesEndpoint, EnvProtocol, EnvTracesProtocol, EnvSDKDisabled, EnvTracesExporter, EnvTracesSampler, EnvTracesSamplerArg} {
		t.Setenv(k, "")
	}
	off, err := Setup(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var nilTracing *Tracing
	for _, tr := range []*Tracing{off, nilTracing} {
		if tr.Enabled() || tr.InsertHook() != nil || tr.WorkHook() != nil || tr.Middleware() != nil {
			t.Errorf("%#v: tracing off has hooks", tr)
		}
		if base := http.RoundTripper(&http.Transport{}); tr.HTTPClient(base) != base || tr.HTTPClient(nil) != http.DefaultTransport {
			t.Error("tracing off wraps the client transport")
		}
		if tr.Shutdown(context.Background()) != nil || tr.ForceFlush(context.Background()) != nil {
			t.Error("tracing off fails to shut down")
		}
	}
	if err := Check(); err != nil {
		t.Error(err)
	}

	// OTEL_SDK_DISABLED wins over an endpoint in the environment and in
	// code.
	t.Setenv(EnvEndpoint, "http://127.0.0.1:1")
	t.Setenv(EnvSDKDisabled, "true")
	if tr, err := Setup(context.Background(), Options{Endpoint: "http://127.0.0.1:1"}); err != nil || tr.Enabled() {
		t.Errorf("OTEL_SDK_DISABLED=true: enabled %v, err %v", tr.Enabled(), err)
	}

	// grpc is refused with a clear message, by Check and by Setup.
	t.Setenv(EnvSDKDisabled, "")
	t.Setenv(EnvProtocol, "grpc")
	if err := Check(); err == nil || !strings.Contains(err.Error(), "http/protobuf") {
		t.Errorf("Check with grpc: %v", err)
	}
	if tr, err := Setup(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "OTLP over HTTP only") {
		t.Errorf("Setup with grpc: %v %v", tr, err)
	}
}

// otlpReceiver is an OTLP/HTTP trace receiver that keeps what it is sent.
type otlpReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
	errs []string
}

func newReceiver(t testing.TB) *otlpReceiver {
	rc := &otlpReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readOTLP(r)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if err != nil {
			rc.errs = append(rc.errs, err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.reqs = append(rc.reqs, body)
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// exportSpan starts and ends a span called name on tr and shuts tr down,
// which exports it, and returns the requests and errors rc has had by
// then.
func (rc *otlpReceiver) exportSpan(t *testing.T, tr *Tracing, name string) ([]*coltracepb.ExportTraceServiceRequest, []string) {
	t.Helper()
	_, span := tr.tracer.Start(context.Background(), name)
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs), slices.Clone(rc.errs)
}

// resourceAttrs returns the string attributes of r.
func resourceAttrs(r *resourcepb.Resource) map[string]string {
	out := map[string]string{}
	for _, kv := range r.GetAttributes() {
		out[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return out
}

// readOTLP decodes one export request.
func readOTLP(r *http.Request) (*coltracepb.ExportTraceServiceRequest, error) {
	if r.Method != "POST" || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		return nil, fmt.Errorf("unexpected %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	return req, proto.Unmarshal(raw, req)
}

// TestSetupExportsOTLP: spans reach an OTLP/HTTP receiver at the
// endpoint, with service.name kiln, once Shutdown has flushed them.
func TestSetupExportsOTLP(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	var logs testutil.Logs
	tr, err := Setup(context.Background(), Options{Endpoint: rc.URL, Version: "v9.9.9", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Fatal("tracing with an endpoint is off")
	}
	reqs, errs := rc.exportSpan(t, tr, "exported")
	if len(errs) > 0 || len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, errors %q", len(reqs), errs)
	}
	rs := reqs[0].GetResourceSpans()
	if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
		t.Fatalf("unexpected export: %v", reqs[0])
	}
	if got := rs[0].GetScopeSpans()[0].GetSpans()[0].GetName(); got != "exported" {
		t.Errorf("span %q", got)
	}
	res := resourceAttrs(rs[0].GetResource())
	// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES in the developer's
	// environment would rename the service.
	renamed := os.Getenv("OTEL_SERVICE_NAME") != "" || os.Getenv("OTEL_RESOURCE_ATTRIBUTES") != ""
	if res["service.name"] == "" || !renamed && res["service.name"] != ServiceName || res["service.version"] != "v9.9.9" || res["host.name"] == "" {
		t.Errorf("resource %v", res)
	}
	if !strings.Contains(logs.String(), "tracing on") {
		t.Errorf("no startup log line: %s", logs.String())
	}
}

// TestErrorLogRateLimited: export errors are logged at most once a
// period, with the count of those left out.
func TestErrorLogRateLimited(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	e := &errorLog{log: slog.New(slog.NewTextHandler(&buf, nil)), every: time.Hour}
	for range 5 {
		e.Handle(errors.New("connection refused"))
	}
	if n := strings.Count(buf.String(), "connection refused"); n != 1 {
		t.Errorf("%d lines logged:\n%s", n, buf.String())
	}
	e.mu.Lock()
	e.last = time.Now().Add(-2 * time.Hour)
	e.mu.Unlock()
	e.Handle(errors.New("timeout"))
	if !strings.Contains(buf.String(), "errors_not_logged=4") {
		t.Errorf("the skipped count is missing:\n%s", buf.String())
	}
}

var testSC = trace.NewSpanContext(trace.SpanContextConfig{TraceID: testTraceID, SpanID: testSpanID, TraceFlags: trace.FlagsSampled})

// TestWithTrace covers the metadata merge cases.
func TestWithTrace(t *testing.T) {
	t.Parallel()
	tc := `{"traceparent":"` + testTraceparent + `"}`
	for _, c := range []struct {
		in, out string
		ok      bool
	}{
		{"", `{"trace":` + tc + `}`, true},
		{"  \n", `{"trace":` + tc + `}`, true},
		{"null", `{"trace":` + tc + `}`, true},
		{`{}`, `{"trace":` + tc + `}`, true},
		{`{"b":1,"a":"<x>"}`, `{"a":"<x>","b":1,"trace":` + tc + `}`, true},
		{` {"trace":{"traceparent":"00-old"},"k":[true]} `, `{"k":[true],"trace":` + tc + `}`, true},
		{`[1,2]`, ``, false},
		{`"text"`, ``, false},
		{`42`, ``, false},
		{`{"a":`, ``, false},
		{`{"a":1} trailing`, ``, false},
		{`nul`, ``, false},
	} {
		got, ok := withTrace(json.RawMessage(c.in), testSC)
		if ok != c.ok || string(got) != c.out {
			t.Errorf("withTrace(%q) = %s %v, want %s %v", c.in, got, ok, c.out, c.ok)
		}
		if ok && !parentFrom(got).Equal(testSC.WithRemote(true)) {
			t.Errorf("parentFrom(%s) = %v", got, parentFrom(got))
		}
	}
	// tracestate travels too.
	ts, err := trace.ParseTraceState("vendor=abc,other=1")
	if err != nil {
		t.Fatal(err)
	}
	sc := testSC.WithTraceState(ts)
	got, ok := withTrace(nil, sc)
	if !ok || !strings.Contains(string(got), `"tracestate":"vendor=abc,other=1"`) || !parentFrom(got).Equal(sc.WithRemote(true)) {
		t.Errorf("with tracestate: %s %v → %v", got, ok, parentFrom(got))
	}
}

// TestParentFromStoredForms: the trace context is read back from the
// metadata as either database returns it.
func TestParentFromStoredForms(t *testing.T) {
	t.Parallel()
	want := testSC.WithRemote(true)
	for _, md := range []string{
		`{"trace":{"traceparent":"` + testTraceparent + `"}}`,   // SQLite, as written
		`{"trace": {"traceparent": "` + testTraceparent + `"}}`, // PostgreSQL jsonb
		`{"a": 1, "trace": {"tracestate": "", "traceparent": "` + testTraceparent + `"}}`,
		` { "trace" : { "traceparent" : "` + testTraceparent + `" } } `,
	} {
		if got := parentFrom(json.RawMessage(md)); !got.Equal(want) {
			t.Errorf("parentFrom(%s) = %v", md, got)
		}
	}
}

// TestParentFromBadMetadata: metadata without a usable trace context
// gives no parent, and never fails.
func TestParentFromBadMetadata(t *testing.T) {
	t.Parallel()
	for _, md := range []string{
		"", "null", "[]", `{"trace":1}`, `{"trace":null}`, `{"trace":{}}`, `{"trace":{"traceparent":"garbage"}}`,
		`{"trace":{"traceparent":"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}}`,
		`{"trace":{"traceparent":"` + testTraceparent + `"`, `{"other":{"trace":{"traceparent":"` + testTraceparent + `"}}}`,
		`{"trace":{"traceparent":"` + strings.Replace(testTraceparent, "0", `"`, 1) + `"}}`,
		`{"trace":{"traceparent":"` + strings.Replace(testTraceparent, "-01", `\u0030`, 1) + `"}}`,
	} {
		if sc := parentFrom(json.RawMessage(md)); sc.IsValid() {
			t.Errorf("parentFrom(%s) = %v", md, sc)
		}
	}
}

// TestServiceNameFromEnv: OTEL_SERVICE_NAME renames the service and
// OTEL_RESOURCE_ATTRIBUTES adds attributes. (Not parallel: it sets the
// process environment.)
func TestServiceNameFromEnv(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "kiln-eu")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
	t.Setenv(EnvSDKDisabled, "")
	rc := newReceiver(t)
	tr, err := Setup(context.Background(), Options{Endpoint: rc.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	reqs, errs := rc.exportSpan(t, tr, "named")
	if len(reqs) != 1 {
		t.Fatalf("%d exports, errors %q", len(reqs), errs)
	}
	res := resourceAttrs(reqs[0].GetResourceSpans()[0].GetResource())
	if res["service.name"] != "kiln-eu" || res["deployment.environment.name"] != "staging" {
		t.Errorf("resource %v", res)
	}
}
