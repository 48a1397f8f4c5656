package tracing

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// FuzzWithTrace: merging a trace context into any metadata never panics;
// a merge yields a JSON object that gives the trace context back and
// keeps the other keys of an object.
func FuzzWithTrace(f *testing.F) {
	for _, s := range []string{"", "null", "{}", `{"a":1}`, `{"trace":{"traceparent":"x"}}`, "[1]", `"s"`, "{", `{"a":"\u003c"}`, " {\"b\":[{}]} ", `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, md []byte) {
		got, ok := withTrace(md, testSC)
		if !ok {
			return
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(got, &obj); err != nil {
			t.Fatalf("withTrace(%q) = %q, not an object: %v", md, got, err)
		}
		if !parentFrom(got).Equal(testSC.WithRemote(true)) {
			t.Fatalf("parentFrom(withTrace(%q)) = %v", md, parentFrom(got))
		}
		var in map[string]json.RawMessage
		if json.Unmarshal(md, &in) == nil {
			for k, v := range in {
				if k == MetadataKey {
					continue
				}
				var a, b bytes.Buffer
				_ = json.Compact(&a, v)
				_ = json.Compact(&b, obj[k])
				if a.String() != b.String() {
					t.Fatalf("key %q: %s became %s", k, v, obj[k])
				}
			}
		}
	})
}

// FuzzParentFrom: reading a parent from any metadata never panics.
func FuzzParentFrom(f *testing.F) {
	for _, s := range []string{"", `{"trace":{"traceparent":"` + testTraceparent + `","tracestate":"a=b"}}`, `{"trace":[]}`, `{"trace":{"traceparent":1}}`} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"trace": {"traceparent": "` + testTraceparent + `"}}`))
	f.Add([]byte(`{"trace":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\"}}`))
	f.Fuzz(func(t *testing.T, md []byte) {
		sc := parentFrom(md)
		if sc.IsValid() && !sc.IsRemote() {
			t.Fatalf("parentFrom(%q) is not remote", md)
		}
		// The fast path for the canonical forms agrees with the decoder.
		if _, ok := canonicalTraceparent(md); ok && !sc.Equal(parentFromJSON(md)) {
			t.Fatalf("parentFrom(%q) = %v, the decoder says %v", md, sc, parentFromJSON(md))
		}
	})
}

// FuzzReadEnv: any sampler, ratio and protocol is accepted or refused
// with an error, never a panic, and an accepted one has a sampler.
func FuzzReadEnv(f *testing.F) {
	f.Add("always_on", "", "")
	f.Add("parentbased_traceidratio", "0.5", "http/protobuf")
	f.Add("traceidratio", "-1", "grpc")
	f.Add("x", "1e400", "http/json")
	f.Fuzz(func(t *testing.T, sampler, arg, protocol string) {
		c, err := readEnv(env{EnvEndpoint: "http://127.0.0.1:4318", EnvTracesSampler: sampler, EnvTracesSamplerArg: arg, EnvProtocol: protocol}.get, false)
		if err == nil && (!c.enabled || c.sampler == nil) {
			t.Fatalf("accepted %q %q %q without a sampler", sampler, arg, protocol)
		}
	})
}

// FuzzMiddlewareHeaders: whatever trace headers and method a request
// carries, the traced API answers it without a 5xx.
func FuzzMiddlewareHeaders(f *testing.F) {
	f.Add("GET", "/api/v1/tracetest/items/1", testTraceparent, "vendor=abc", "k=v")
	f.Add("POST", "/api/v1/tracetest/items/1", "00-zz", "=,=,", ";;;")
	f.Add("BREW", "/api/v1/nope", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "", "")
	f.Add("GET", "/api/v1/jobs/1", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "a=\x00", "%zz=1")
	r := newRecorded(f)
	c := dbtest.SQLite(f).Client(f, queue.Config{}, false)
	a := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Modules: []httpapi.Module{itemsModule{}}, Middleware: []func(http.Handler) http.Handler{r.Middleware()}}))(f)
	f.Fuzz(func(t *testing.T, method, path, traceparent, tracestate, baggage string) {
		req, err := http.NewRequest(method, "http://kiln.test"+path, nil)
		if err != nil {
			return
		}
		req.Header["Traceparent"] = []string{traceparent}
		req.Header["Tracestate"] = []string{tracestate}
		req.Header["Baggage"] = []string{baggage}
		w := httptest.NewRecorder()
		a.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s with traceparent %q: %d %s", method, path, traceparent, w.Code, w.Body)
		}
	})
}

// itemsModule serves only the item route of testModule, none that fails
// on purpose.
type itemsModule struct{}

func (itemsModule) Routes() []httpapi.Route { return testModule{}.Routes()[:1] }
func (itemsModule) OpenAPI() []byte         { return []byte(`{"paths":{}}`) }
