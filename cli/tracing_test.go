package cli

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpCollector is an OTLP/HTTP trace receiver on loopback that keeps
// every span it is sent.
type otlpCollector struct {
	*httptest.Server
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string // service.name of each resource
	errs     []string
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	t.Helper()
	oc := &otlpCollector{}
	oc.Server = httptest.NewServer(http.HandlerFunc(oc.export))
	t.Cleanup(oc.Close)
	return oc
}

// export takes one ExportTraceServiceRequest, protobuf, maybe gzipped.
func (oc *otlpCollector) export(w http.ResponseWriter, r *http.Request) {
	req, err := decodeExport(r)
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if err != nil {
		oc.errs = append(oc.errs, err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				oc.services = append(oc.services, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			oc.spans = append(oc.spans, ss.GetSpans()...)
		}
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func decodeExport(r *http.Request) (*coltracepb.ExportTraceServiceRequest, error) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		return nil, fmt.Errorf("unexpected %s %s", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		return nil, fmt.Errorf("content type %q, want application/x-protobuf", ct)
	}
	var body io.Reader = io.LimitReader(r.Body, 64<<20)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
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
	if err := proto.Unmarshal(raw, req); err != nil {
		return nil, err
	}
	return req, nil
}

// find returns the span named name in trace traceID, if it has arrived.
func (oc *otlpCollector) find(traceID []byte, name string) *tracepb.Span {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	for _, s := range oc.spans {
		if s.GetName() == name && bytes.Equal(s.GetTraceId(), traceID) {
			return s
		}
	}
	return nil
}

// descends reports whether span is child is a descendant of span
// ancestor (by span id) in the trace, following parents among the spans
// received.
func (oc *otlpCollector) descends(child *tracepb.Span, ancestor []byte) bool {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	byID := map[string]*tracepb.Span{}
	for _, s := range oc.spans {
		if bytes.Equal(s.GetTraceId(), child.GetTraceId()) {
			byID[string(s.GetSpanId())] = s
		}
	}
	for s, hops := child, 0; s != nil && hops < 100; hops++ {
		if bytes.Equal(s.GetParentSpanId(), ancestor) {
			return true
		}
		s = byID[string(s.GetParentSpanId())]
	}
	return false
}

func (oc *otlpCollector) String() string {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d spans, errors %q:", len(oc.spans), oc.errs)
	for _, s := range oc.spans {
		fmt.Fprintf(&b, "\n  %s trace=%x span=%x parent=%x", s.GetName(), s.GetTraceId(), s.GetSpanId(), s.GetParentSpanId())
	}
	return b.String()
}

// TestServeTracesRequestToJob runs kiln serve with an OTLP endpoint,
// creates an order and a webhook delivery in a trace the test starts,
// and checks that the collector receives, in that one trace, the
// requests' spans, the order's confirm job's span under its request, and
// the webhook.deliver job's span under its request with the delivery's
// HTTP client span under it, whose context the receiving server gets in
// traceparent: request → job → webhook.
func TestServeTracesRequestToJob(t *testing.T) {
	t.Parallel()
	oc := newOTLPCollector(t)
	// The webhook receiver records the traceparent of each delivery.
	got := make(chan string, 8)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
	}))
	t.Cleanup(receiver.Close)
	db := filepath.Join(t.TempDir(), "kiln.db")
	token := strings.TrimSpace(mustKiln(t, "token", "create", "--scope", "admin", "--db", db))
	if i := strings.LastIndexByte(token, '\n'); i >= 0 {
		token = token[i+1:]
	}
	s := start(t, procOpts{env: []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + oc.URL,
		"OTEL_BSP_SCHEDULE_DELAY=100",
		"OTEL_TRACES_SAMPLER=parentbased_always_on",
		"OTEL_SDK_DISABLED=false",
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_SERVICE_NAME=kiln-e2e",
	}}, "serve", "--addr", "127.0.0.1:0", "--db", db, "--admin-addr", "off",
		// The receiver listens on loopback, which webhooks may not reach
		// unless allowed.
		"--webhook-allow-networks", "127.0.0.0/8")
	m := waitListening(t, s)
	if !strings.Contains(s.stderr.String(), "tracing on") {
		t.Errorf("serve does not say tracing is on:\n%s", s.stderr)
	}

	traceID := "0af7651916cd43dd8448eb211c80319c"
	parentID := "b7ad6b7169203331"
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, body string, out any) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+m[1]+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	var user struct {
		ID int64 `json:"id"`
	}
	do("POST", "/api/v1/users", `{"email":"grace@example.com","name":"Grace Hopper"}`, &user)
	var order struct {
		ID           int64 `json:"id"`
		ConfirmJobID int64 `json:"confirm_job_id"`
	}
	do("POST", "/api/v1/orders", `{"user_id":`+strconv.FormatInt(user.ID, 10)+`,"amount_cents":4200,"currency":"EUR"}`, &order)
	if order.ConfirmJobID == 0 {
		t.Fatal("the order names no confirm job")
	}
	waitFor(t, 30*time.Second, func() string { return "the confirm job to complete\n" + s.stderr.String() }, func() (bool, error) {
		var job struct {
			State string `json:"state"`
		}
		do("GET", "/api/v1/jobs/"+strconv.FormatInt(order.ConfirmJobID, 10), "", &job)
		if job.State == "failed" || job.State == "cancelled" {
			return false, fmt.Errorf("the confirm job is %s", job.State)
		}
		return job.State == "completed", nil
	})

	var endpoint struct {
		ID int64 `json:"id"`
	}
	do("POST", "/api/v1/webhooks", `{"url":"`+receiver.URL+`/hook"}`, &endpoint)
	var delivery struct {
		ID    int64 `json:"id"`
		JobID int64 `json:"job_id"`
	}
	do("POST", "/api/v1/webhooks/"+strconv.FormatInt(endpoint.ID, 10)+"/deliveries", `{"event":"order.created","payload":{"order":`+strconv.FormatInt(order.ID, 10)+`}}`, &delivery)
	waitFor(t, 30*time.Second, func() string { return "the delivery\n" + s.stderr.String() }, func() (bool, error) {
		var d struct {
			Status string `json:"status"`
		}
		do("GET", "/api/v1/webhook-deliveries/"+strconv.FormatInt(delivery.ID, 10), "", &d)
		if d.Status == "failed" || d.Status == "cancelled" {
			return false, fmt.Errorf("the delivery is %s", d.Status)
		}
		return d.Status == "delivered", nil
	})
	var receivedParent string
	select {
	case receivedParent = <-got:
	default:
		t.Fatal("the delivery is delivered but the receiver saw no request")
	}

	// SIGTERM flushes what is left.
	s.signal(syscall.SIGTERM)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM\n%s", code, s.stderr)
	}
	tid, _ := hex.DecodeString(traceID)
	pid, _ := hex.DecodeString(parentID)
	var reqSpan, jobSpan *tracepb.Span
	waitFor(t, 10*time.Second, func() string { return "the request and job spans; the collector has " + oc.String() }, func() (bool, error) {
		reqSpan, jobSpan = oc.find(tid, "POST /api/v1/orders"), oc.find(tid, "job order.confirm")
		return reqSpan != nil && jobSpan != nil, nil
	})
	if reqSpan.GetKind() != tracepb.Span_SPAN_KIND_SERVER || !bytes.Equal(reqSpan.GetParentSpanId(), pid) {
		t.Errorf("request span: kind %s parent %x, want server under %s", reqSpan.GetKind(), reqSpan.GetParentSpanId(), parentID)
	}
	if jobSpan.GetKind() != tracepb.Span_SPAN_KIND_CONSUMER || !oc.descends(jobSpan, reqSpan.GetSpanId()) {
		t.Errorf("job span: kind %s parent %x, want a consumer under the request span %x\n%s", jobSpan.GetKind(), jobSpan.GetParentSpanId(), reqSpan.GetSpanId(), oc)
	}
	var jobID int64
	var kind string
	for _, kv := range jobSpan.GetAttributes() {
		switch kv.GetKey() {
		case "kiln.job.id":
			jobID = kv.GetValue().GetIntValue()
		case "kiln.job.kind":
			kind = kv.GetValue().GetStringValue()
		}
	}
	if jobID != order.ConfirmJobID || kind != "order.confirm" {
		t.Errorf("job span names job %d of kind %q, want %d order.confirm", jobID, kind, order.ConfirmJobID)
	}

	// request → job → webhook.
	var hookReq, hookJob, hookSend *tracepb.Span
	waitFor(t, 10*time.Second, func() string { return "the webhook spans; the collector has " + oc.String() }, func() (bool, error) {
		hookReq, hookJob = oc.find(tid, "POST /api/v1/webhooks/{id}/deliveries"), oc.find(tid, "job webhook.deliver")
		hookSend = oc.find(tid, "POST")
		return hookReq != nil && hookJob != nil && hookSend != nil, nil
	})
	if !oc.descends(hookJob, hookReq.GetSpanId()) {
		t.Errorf("webhook.deliver span %x is not under its request's span %x\n%s", hookJob.GetSpanId(), hookReq.GetSpanId(), oc)
	}
	if hookSend.GetKind() != tracepb.Span_SPAN_KIND_CLIENT || !oc.descends(hookSend, hookJob.GetSpanId()) {
		t.Errorf("delivery request span: kind %s, want a client span under the job span %x\n%s", hookSend.GetKind(), hookJob.GetSpanId(), oc)
	}
	if want := fmt.Sprintf("00-%s-%x-01", traceID, hookSend.GetSpanId()); receivedParent != want {
		t.Errorf("the receiver got traceparent %q, want %q", receivedParent, want)
	}

	oc.mu.Lock()
	defer oc.mu.Unlock()
	for _, name := range oc.services {
		if name != "kiln-e2e" {
			t.Errorf("service.name %q, want OTEL_SERVICE_NAME's kiln-e2e", name)
		}
	}
	for _, sp := range oc.spans {
		if strings.HasSuffix(sp.GetName(), "/"+strconv.FormatInt(order.ConfirmJobID, 10)) {
			t.Errorf("span %q holds a raw path", sp.GetName())
		}
	}
}

// TestServeRefusesGRPC: kiln exports over HTTP only, and says so before
// it touches the database.
func TestServeRefusesGRPC(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "kiln.db")
	r := kiln(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_SDK_DISABLED=false"},
		"serve", "--addr", "127.0.0.1:0", "--db", db)
	if r.code != 2 || !strings.Contains(r.stderr, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: kiln speaks OTLP over HTTP only") {
		t.Errorf("serve with grpc: %s", r)
	}
	noPanic(t, r)
	if m, _ := filepath.Glob(db + "*"); len(m) > 0 {
		t.Errorf("serve created %v before refusing", m)
	}
}

// TestBenchTelemetry: kiln bench --telemetry runs the jobs with the
// tracing hooks in place (every attempt's span reaches the collector by
// the time bench exits) and says what was on.
func TestBenchTelemetry(t *testing.T) {
	t.Parallel()
	oc := newOTLPCollector(t)
	const jobs = 300
	r := kiln(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + oc.URL, "OTEL_SDK_DISABLED=false"},
		"bench", "--telemetry", "--jobs", strconv.Itoa(jobs), "--workers", "20")
	if r.code != 0 {
		t.Fatal(r)
	}
	if !strings.Contains(r.stdout, "telemetry on (metrics, runtime monitor, slow log, tracing)") {
		t.Errorf("bench output does not say telemetry was on:\n%s", r.stdout)
	}
	oc.mu.Lock()
	attempts := 0
	for _, s := range oc.spans {
		if s.GetName() == "job noop" {
			attempts++
		}
	}
	oc.mu.Unlock()
	if attempts != jobs {
		t.Errorf("collector holds %d job spans, want %d: %s", attempts, jobs, oc)
	}

	off := kiln(t, nil, "bench", "--jobs", "50", "--workers", "5")
	if off.code != 0 || !strings.Contains(off.stdout, "telemetry off") {
		t.Errorf("bench without --telemetry: %v", off)
	}
}
