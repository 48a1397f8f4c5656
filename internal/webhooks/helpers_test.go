package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/resilience"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// env is the webhooks API and a started engine over a test database.
type env struct {
	*testutil.Server
	t        *testing.T
	de       *dbtest.Env
	client   *queue.Client
	svc      *Service
	api      *httpapi.API
	breakers *resilience.Breakers
	// clock is the breakers' clock; it moves only when a test moves it.
	clock *testutil.Clock
}

type envOpts struct {
	timeout     time.Duration // per attempt; 0: 2s
	maxAttempts int           // 0: 8
	// allow are the networks webhooks may reach besides public ones;
	// nil: 127.0.0.0/8, where the test receivers listen.
	allow []netip.Prefix
	// publicOnly allows no network: a deployment's default.
	publicOnly bool
	resolver   *net.Resolver // nil: the default
}

// loopback is the range the test receivers listen in.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

func newEnv(t *testing.T, de *dbtest.Env, o envOpts) *env {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 2 * time.Second
	}
	switch {
	case o.publicOnly:
		o.allow = nil
	case o.allow == nil:
		o.allow = []netip.Prefix{loopback}
	}
	clk := testutil.NewClock(time.Now())
	br := resilience.NewBreakers(resilience.BreakerOptions{Now: clk.Now})
	w := queue.NewWorkers()
	opts := Options{
		AllowNetworks: o.allow,
		Resolver:      o.resolver,
		Breakers:      br,
		Timeout:       o.timeout,
		Retry:         queue.RetryPolicy{MaxAttempts: o.maxAttempts, BaseDelay: 10 * time.Millisecond, MaxDelay: 40 * time.Millisecond},
	}
	got := RegisterKinds(w, de.DB, opts)
	if got != br {
		t.Fatal("RegisterKinds did not return the breakers it was given")
	}
	c := de.Client(t, queue.Config{
		Workers:      w,
		Queues:       map[string]queue.QueueConfig{Queue: {MaxWorkers: 4}},
		PollInterval: 20 * time.Millisecond,
	}, true)
	svc := testutil.Must(NewService(de.DB, c, opts))(t)
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Modules: []httpapi.Module{NewHandler(svc)}}))(t)
	return &env{Server: testutil.Serve(t, api), t: t, de: de, client: c, svc: svc, api: api, breakers: br, clock: clk}
}

// The API's answers, as a client reads them.
type (
	webhookView struct {
		ID          int64  `json:"id"`
		URL         string `json:"url"`
		Description string `json:"description"`
		Secret      string `json:"secret"`
		SecretHint  string `json:"secret_hint"`
		Deliveries  string `json:"deliveries"`
		Breaker     *struct {
			Host                string     `json:"host"`
			State               string     `json:"state"`
			ConsecutiveFailures int        `json:"consecutive_failures"`
			OpenUntil           *time.Time `json:"open_until"`
		} `json:"breaker"`
	}
	attemptView struct {
		Attempt      int        `json:"attempt"`
		JobAttempt   int        `json:"job_attempt"`
		StartedAt    time.Time  `json:"started_at"`
		DurationMS   int64      `json:"duration_ms"`
		StatusCode   *int       `json:"status_code"`
		Error        string     `json:"error"`
		Outcome      string     `json:"outcome"`
		ResponseBody string     `json:"response_body"`
		NextRetryAt  *time.Time `json:"next_retry_at"`
	}
	deliveryView struct {
		ID           int64           `json:"id"`
		WebhookID    int64           `json:"webhook_id"`
		Event        string          `json:"event"`
		Status       string          `json:"status"`
		AttemptCount int             `json:"attempt_count"`
		LastError    string          `json:"last_error"`
		CreatedAt    time.Time       `json:"created_at"`
		FinishedAt   *time.Time      `json:"finished_at"`
		JobID        int64           `json:"job_id"`
		Job          string          `json:"job"`
		Delivery     string          `json:"delivery"`
		Payload      json.RawMessage `json:"payload"`
		Attempts     []attemptView   `json:"attempts"`
	}
)

// createWebhook registers url and checks the 201 answer.
func (e *env) createWebhook(url string) webhookView {
	e.t.Helper()
	r := e.Do("POST", "/api/v1/webhooks", fmt.Sprintf(`{"url":%q,"description":"test"}`, url))
	if r.Status != 201 {
		e.t.Fatalf("create webhook %s: %d %s", url, r.Status, r.Body)
	}
	w := testutil.Decode[webhookView](e.t, r)
	if w.ID < 1 || !strings.HasPrefix(w.Secret, SecretPrefix) || r.Header.Get("Location") != fmt.Sprintf("/api/v1/webhooks/%d", w.ID) {
		e.t.Fatalf("create answer %+v, Location %q", w, r.Header.Get("Location"))
	}
	return w
}

// deliver posts an event to webhook id and checks the 202 answer.
func (e *env) deliver(id int64, event, payload string) deliveryView {
	e.t.Helper()
	r := e.Do("POST", fmt.Sprintf("/api/v1/webhooks/%d/deliveries", id), fmt.Sprintf(`{"event":%q,"payload":%s}`, event, payload))
	if r.Status != 202 {
		e.t.Fatalf("deliver: %d %s", r.Status, r.Body)
	}
	d := testutil.Decode[deliveryView](e.t, r)
	if d.ID < 1 || d.JobID < 1 || r.Header.Get("Location") != fmt.Sprintf("/api/v1/jobs/%d", d.JobID) || d.Status != "pending" ||
		d.Job != r.Header.Get("Location") || d.Delivery != fmt.Sprintf("/api/v1/webhook-deliveries/%d", d.ID) {
		e.t.Fatalf("deliver answer %s, Location %q", r.Body, r.Header.Get("Location"))
	}
	return d
}

func (e *env) delivery(id int64) deliveryView {
	e.t.Helper()
	r := e.Do("GET", fmt.Sprintf("/api/v1/webhook-deliveries/%d", id), "")
	if r.Status != 200 {
		e.t.Fatalf("GET delivery %d: %d %s", id, r.Status, r.Body)
	}
	return testutil.Decode[deliveryView](e.t, r)
}

func (e *env) job(id int64) *queue.Job {
	e.t.Helper()
	j, err := e.client.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

// waitJob polls job id until it is final, within a deadline.
func (e *env) waitJob(id int64) *queue.Job {
	e.t.Helper()
	return dbtest.WaitJob(e.t, e.client, id, nil)
}

// waitJobFor polls job id until cond holds, within a deadline.
func (e *env) waitJobFor(id int64, cond func(*queue.Job) bool) *queue.Job {
	return dbtest.WaitJob(e.t, e.client, id, cond)
}

// waitDelivery polls delivery id until cond holds, within a deadline.
func (e *env) waitDelivery(id int64, what string, cond func(deliveryView) bool) deliveryView {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d := e.delivery(id)
		if cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("delivery %d not %s after 20s: %+v", id, what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// request is what a receiver got.
type request struct {
	header http.Header
	body   []byte
	// verify is Verify's verdict with the endpoint's secret.
	verify error
}

// receiver is a webhook endpoint: answer decides each response, given
// the request's number (1 for the first).
type receiver struct {
	srv    *httptest.Server
	answer func(n int, w http.ResponseWriter, r *http.Request)
	secret atomic.Pointer[string]
	hits   atomic.Int32

	mu   sync.Mutex
	reqs []request
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(rc.hits.Add(1))
		body, _ := io.ReadAll(r.Body)
		req := request{header: r.Header.Clone(), body: body}
		if s := rc.secret.Load(); s != nil {
			req.verify = Verify(*s, r.Header, body, time.Now(), time.Minute)
		} else {
			req.verify = fmt.Errorf("no secret set")
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, req)
		rc.mu.Unlock()
		answer(n, w, r)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

// register creates an endpoint for the receiver at path and tells the
// receiver its secret.
func (rc *receiver) register(e *env, path string) webhookView {
	w := e.createWebhook(rc.srv.URL + path)
	rc.secret.Store(&w.Secret)
	return w
}

// urlAt is the receiver's URL with host in place of its address, and
// path.
func (rc *receiver) urlAt(host, path string) string {
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	return "http://" + net.JoinHostPort(host, port) + path
}

// status answers with code and body.
func status(code int, body string) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

func outcomes(d deliveryView) string {
	var s []string
	for _, a := range d.Attempts {
		code := 0
		if a.StatusCode != nil {
			code = *a.StatusCode
		}
		s = append(s, fmt.Sprintf("%d:%s:%d", a.Attempt, a.Outcome, code))
	}
	return strings.Join(s, " ")
}

// fakeDNS is a DNS server that answers every A query with the address
// it holds (none when it holds an IPv6 one) and AAAA queries with
// nothing, for a resolver that asks it alone.
type fakeDNS struct {
	pc      net.PacketConn
	answer  atomic.Pointer[netip.Addr]
	queries atomic.Int32
}

func newFakeDNS(t *testing.T, a netip.Addr) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{pc: pc}
	f.set(a)
	go f.serve()
	t.Cleanup(func() { _ = pc.Close() })
	return f
}

// set changes the answer from the next query on.
func (f *fakeDNS) set(a netip.Addr) { f.answer.Store(&a) }

// resolver returns a resolver that sends every query to f.
func (f *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", f.pc.LocalAddr().String())
	}}
}

func (f *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := f.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		f.queries.Add(1)
		if resp, err := f.reply(buf[:n]); err == nil {
			_, _ = f.pc.WriteTo(resp, from)
		}
	}
}

// reply builds the answer to query q.
func (f *fakeDNS) reply(q []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, err
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	for _, q := range qs {
		if err := b.Question(q); err != nil {
			return nil, err
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	a := *f.answer.Load()
	for _, q := range qs {
		if q.Type != dnsmessage.TypeA || !a.Is4() {
			continue
		}
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
		if err := b.AResource(rh, dnsmessage.AResource{A: a.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
