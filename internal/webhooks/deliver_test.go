package webhooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// TestDeliverRetriesUntilDelivered: two 500s, then a 200. The delivery
// is made on the job's third attempt, each attempt is recorded, and
// every request is the same signed message.
func TestDeliverRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n <= 2 {
				status(500, "database down")(n, w, r)
				return
			}
			status(200, "thanks")(n, w, r)
		})
		wh := rc.register(e, "/hook?x=1")
		d := e.deliver(wh.ID, "order.confirmed", `{"order_id": 7, "total": "12.50", "tags": ["a", "é"]}`)
		if j := e.waitJob(d.JobID); j.State != queue.StateCompleted || j.Attempt != 3 {
			t.Fatalf("job %s after %d attempts: %+v", j.State, j.Attempt, j.Errors)
		}
		got := e.delivery(d.ID)
		if got.Status != "delivered" || got.AttemptCount != 3 || got.FinishedAt == nil || got.LastError != "" {
			t.Errorf("delivery %+v", got)
		}
		if o := outcomes(got); o != "1:retry:500 2:retry:500 3:delivered:200" {
			t.Errorf("attempts %s", o)
		}
		for i, a := range got.Attempts {
			if a.JobAttempt != i+1 || a.StartedAt.IsZero() || a.DurationMS < 0 || a.NextRetryAt != nil {
				t.Errorf("attempt %+v", a)
			}
		}
		if a := got.Attempts[0]; a.ResponseBody != "database down" || a.Error != "status 500" {
			t.Errorf("first attempt %+v", a)
		}
		if a := got.Attempts[2]; a.ResponseBody != "thanks" || a.Error != "" {
			t.Errorf("last attempt %+v", a)
		}
		if string(got.Payload) != `{"order_id":7,"total":"12.50","tags":["a","é"]}` {
			t.Errorf("payload %s", got.Payload)
		}

		reqs := rc.requests()
		if len(reqs) != 3 {
			t.Fatalf("%d requests", len(reqs))
		}
		for i, r := range reqs {
			if r.verify != nil {
				t.Errorf("request %d: Verify: %v", i+1, r.verify)
			}
			h := r.header
			if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != UserAgent || h.Get(HeaderID) != fmt.Sprint(d.ID) {
				t.Errorf("request %d headers %v", i+1, h)
			}
			if string(r.body) != string(reqs[0].body) {
				t.Errorf("request %d body differs:\n%s\n%s", i+1, r.body, reqs[0].body)
			}
		}
		var msg struct {
			ID        int64           `json:"id"`
			Event     string          `json:"event"`
			CreatedAt time.Time       `json:"created_at"`
			Payload   json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(reqs[0].body, &msg); err != nil {
			t.Fatal(err)
		}
		if msg.ID != d.ID || msg.Event != "order.confirmed" || !msg.CreatedAt.Equal(d.CreatedAt) || string(msg.Payload) != string(got.Payload) {
			t.Errorf("message %s", reqs[0].body)
		}
		// A tampered body fails verification.
		tampered := strings.Replace(string(reqs[0].body), "12.50", "99.99", 1)
		if err := Verify(wh.Secret, reqs[0].header, []byte(tampered), time.Now(), 0); !errors.Is(err, ErrSignature) {
			t.Errorf("tampered body: %v", err)
		}
		// The job's result names the delivery.
		var res result
		if err := json.Unmarshal(e.job(d.JobID).Result, &res); err != nil || res != (result{DeliveryID: d.ID, StatusCode: 200, Attempt: 3}) {
			t.Errorf("result %+v, %v", res, err)
		}
	})
}

// TestDeliverTimeout: an endpoint that does not answer within the
// attempt's timeout is recorded as a timeout and tried again.
func TestDeliverTimeout(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{timeout: 200 * time.Millisecond})
		rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				select { // hang until the client gives up
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
				return
			}
			status(204, "")(n, w, r)
		})
		wh := rc.register(e, "/")
		d := e.deliver(wh.ID, "ping", `{}`)
		if j := e.waitJob(d.JobID); j.State != queue.StateCompleted || j.Attempt != 2 {
			t.Fatalf("job %s after %d attempts", j.State, j.Attempt)
		}
		got := e.delivery(d.ID)
		if o := outcomes(got); o != "1:retry:0 2:delivered:204" {
			t.Errorf("attempts %s", o)
		}
		a := got.Attempts[0]
		if !strings.HasPrefix(a.Error, "timeout") || a.StatusCode != nil || a.DurationMS < 150 || a.DurationMS > 5000 {
			t.Errorf("timed-out attempt %+v", a)
		}
	})
}

// TestDeliverRetryAfter: a 429 with Retry-After: 7 schedules the next
// attempt no sooner than 7 seconds later.
func TestDeliverRetryAfter(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			status(429, "slow down")(n, w, r)
		})
		wh := rc.register(e, "/")
		before := time.Now()
		d := e.deliver(wh.ID, "ping", `{"a":1}`)
		j := e.waitJobFor(d.JobID, func(j *queue.Job) bool { return j.State == queue.StateRetryable })
		got := e.delivery(d.ID)
		if len(got.Attempts) != 1 {
			t.Fatalf("attempts %+v", got.Attempts)
		}
		a := got.Attempts[0]
		if j.RunAt.Before(a.StartedAt.Add(7*time.Second)) || j.RunAt.Before(before.Add(7*time.Second)) {
			t.Errorf("next run at %s, attempt started %s: want 7s later at least", j.RunAt, a.StartedAt)
		}
		if j.RunAt.After(time.Now().Add(8 * time.Second)) {
			t.Errorf("next run at %s: far more than 7s", j.RunAt)
		}
		if a.Outcome != "retry" || *a.StatusCode != 429 || a.Error != "status 429 (Retry-After 7s)" || a.NextRetryAt == nil || !a.NextRetryAt.Equal(j.RunAt) {
			t.Errorf("attempt %+v, job run at %s", a, j.RunAt)
		}
		if got.Status != "pending" || rc.hits.Load() != 1 {
			t.Errorf("status %s after %d hits", got.Status, rc.hits.Load())
		}
	})
}

// TestDeliverRefused: a 400 fails the delivery at once; so does a
// redirect, which is not followed.
func TestDeliverRefused(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		rc := newReceiver(t, status(400, `{"error":"unknown event"}`))
		wh := rc.register(e, "/")
		d := e.deliver(wh.ID, "ping", `{}`)
		if j := e.waitJob(d.JobID); j.State != queue.StateFailed || j.Attempt != 1 {
			t.Fatalf("job %s after %d attempts", j.State, j.Attempt)
		}
		got := e.delivery(d.ID)
		if got.Status != "failed" || got.AttemptCount != 1 || outcomes(got) != "1:failed:400" || got.FinishedAt == nil ||
			got.Attempts[0].ResponseBody != `{"error":"unknown event"}` || !strings.Contains(got.LastError, "refused") {
			t.Errorf("delivery %+v", got)
		}

		target := newReceiver(t, status(200, ""))
		moved := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.srv.URL+"/new", http.StatusPermanentRedirect)
		})
		wh = moved.register(e, "/old")
		d = e.deliver(wh.ID, "ping", `{}`)
		if j := e.waitJob(d.JobID); j.State != queue.StateFailed || j.Attempt != 1 {
			t.Fatalf("redirect: job %s after %d attempts", j.State, j.Attempt)
		}
		got = e.delivery(d.ID)
		if got.Status != "failed" || outcomes(got) != "1:failed:308" || !strings.Contains(got.LastError, "redirects are not followed") ||
			!strings.Contains(got.LastError, target.srv.URL+"/new") || target.hits.Load() != 0 {
			t.Errorf("redirect: %+v, target hit %d times", got, target.hits.Load())
		}
	})
}

// TestDeliverConnectionRefused: an endpoint where nothing listens is
// retried until the attempts run out.
func TestDeliverConnectionRefused(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{maxAttempts: 2})
		rc := newReceiver(t, status(200, ""))
		wh := rc.register(e, "/")
		rc.srv.Close()
		d := e.deliver(wh.ID, "ping", `{}`)
		if j := e.waitJob(d.JobID); j.State != queue.StateFailed || j.Attempt != 2 {
			t.Fatalf("job %s after %d attempts", j.State, j.Attempt)
		}
		got := e.delivery(d.ID)
		if got.Status != "failed" || outcomes(got) != "1:retry:0 2:failed:0" {
			t.Fatalf("delivery %+v", got)
		}
		for _, a := range got.Attempts {
			if !strings.HasPrefix(a.Error, "connection refused") {
				t.Errorf("attempt %d error %q", a.Attempt, a.Error)
			}
		}
		if !strings.Contains(got.LastError, "giving up") {
			t.Errorf("last error %q", got.LastError)
		}
	})
}

// TestBreaker: five failures in a row to host A open its breaker; then
// deliveries to A are put off without a request while host B still
// gets its own; after the cooldown one probe goes through and, on
// success, closes the breaker.
func TestBreaker(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{maxAttempts: 8})
		var healthy = make(chan struct{})
		a := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			select {
			case <-healthy:
				status(200, "")(n, w, r)
			default:
				status(503, "")(n, w, r)
			}
		})
		b := newReceiver(t, status(200, ""))
		whA, whB := a.register(e, "/a"), b.register(e, "/b")

		d1 := e.deliver(whA.ID, "ping", `{}`)
		got := e.waitDelivery(d1.ID, "snoozed by the breaker", func(d deliveryView) bool {
			return len(d.Attempts) > 0 && d.Attempts[len(d.Attempts)-1].Outcome == "snoozed"
		})
		if o := outcomes(got); o != "1:retry:503 2:retry:503 3:retry:503 4:retry:503 5:retry:503 6:snoozed:0" {
			t.Fatalf("attempts %s", o)
		}
		if n := a.hits.Load(); n != 5 {
			t.Fatalf("host A hit %d times, want 5", n)
		}
		open := got.Attempts[5]
		until := e.clock.Now().Add(30 * time.Second)
		// The job's next run: the end of the cooldown, as this process's
		// clock puts it.
		if open.Error != "circuit open" || open.JobAttempt != 6 || open.NextRetryAt == nil ||
			open.NextRetryAt.Sub(until).Abs() > 5*time.Second {
			t.Errorf("circuit-open attempt %+v, want retry at %s", open, until)
		}
		// Snoozed: the job waits for the cooldown without using an attempt.
		j := e.waitJobFor(d1.JobID, func(j *queue.Job) bool { return j.State == queue.StateScheduled })
		if j.Attempt != 5 || j.RunAt.Before(time.Now().Add(20*time.Second)) {
			t.Errorf("snoozed job: attempt %d, runs at %s", j.Attempt, j.RunAt)
		}
		r := e.Do("GET", fmt.Sprintf("/api/v1/webhooks/%d", whA.ID), "")
		if w := testutil.Decode[webhookView](t, r); w.Breaker == nil || w.Breaker.State != "open" || w.Breaker.OpenUntil == nil || w.Breaker.Host != hostKey(a.srv.URL) {
			t.Errorf("webhook A: %s", r.Body)
		}

		// A new delivery to A: put off at once, no request.
		d2 := e.deliver(whA.ID, "ping", `{}`)
		got = e.waitDelivery(d2.ID, "snoozed", func(d deliveryView) bool { return d.AttemptCount == 1 })
		if o := outcomes(got); o != "1:snoozed:0" || a.hits.Load() != 5 {
			t.Errorf("second delivery to A: %s after %d hits", o, a.hits.Load())
		}
		// Host B is unaffected.
		d3 := e.deliver(whB.ID, "ping", `{}`)
		if j := e.waitJob(d3.JobID); j.State != queue.StateCompleted || b.hits.Load() != 1 {
			t.Errorf("host B: job %s, %d hits", j.State, b.hits.Load())
		}

		// After the cooldown, a probe goes through; A has recovered.
		close(healthy)
		e.clock.Advance(30 * time.Second)
		d4 := e.deliver(whA.ID, "ping", `{}`)
		if j := e.waitJob(d4.JobID); j.State != queue.StateCompleted || a.hits.Load() != 6 {
			t.Fatalf("probe: job %s, host A hit %d times", j.State, a.hits.Load())
		}
		r = e.Do("GET", fmt.Sprintf("/api/v1/webhooks/%d", whA.ID), "")
		if w := testutil.Decode[webhookView](t, r); w.Breaker == nil || w.Breaker.State != "closed" || w.Breaker.OpenUntil != nil {
			t.Errorf("webhook A after the probe: %s", r.Body)
		}
		for _, rq := range append(a.requests(), b.requests()...) {
			if rq.verify != nil {
				t.Errorf("Verify: %v", rq.verify)
			}
		}
	})
}

// TestDeletedEndpoint: the job of a delivery whose endpoint was deleted
// cancels itself.
func TestDeletedEndpoint(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		rc := newReceiver(t, status(500, ""))
		wh := rc.register(e, "/")
		d := e.deliver(wh.ID, "ping", `{}`)
		e.waitDelivery(d.ID, "attempted", func(d deliveryView) bool { return d.AttemptCount > 0 })
		if r := e.Do("DELETE", fmt.Sprintf("/api/v1/webhooks/%d", wh.ID), ""); r.Status != 204 {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		if j := e.waitJob(d.JobID); j.State != queue.StateCancelled {
			t.Errorf("job %s", j.State)
		}
		if r := e.Do("GET", fmt.Sprintf("/api/v1/webhook-deliveries/%d", d.ID), ""); r.Status != 404 {
			t.Errorf("deleted delivery: %d %s", r.Status, r.Body)
		}
		// An attempt that ends after the deletion is not recorded; the
		// error names the delivery once.
		_, err := newStore(de.DB).record(context.Background(), d.ID, Attempt{JobAttempt: 9, StartedAt: time.Now(), Outcome: OutcomeRetry, Error: "late"}, StatusPending, time.Now())
		if want := fmt.Sprintf("record attempt of webhook delivery %d: not found", d.ID); !errors.Is(err, ErrNotFound) || err.Error() != want {
			t.Errorf("record after deletion: %v, want %q", err, want)
		}
	})
}

// TestEnqueueInTransaction: a delivery enqueued in a transaction that
// rolls back leaves neither delivery nor job; one that commits is
// delivered.
func TestEnqueueInTransaction(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		rc := newReceiver(t, status(200, ""))
		wh := rc.register(e, "/")
		ctx := context.Background()
		boom := errors.New("the order could not be saved")
		var jobID int64
		err := de.DB.InTx(ctx, func(tx *sql.Tx) error {
			d, err := e.svc.Enqueue(ctx, tx, wh.ID, "order.created", json.RawMessage(`{"id":1}`))
			if err != nil {
				return err
			}
			jobID = d.JobID
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if _, err := e.client.Get(ctx, jobID); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("job of a rolled-back delivery: %v", err)
		}
		ds, err := e.svc.Deliveries(ctx, wh.ID, ListParams{Limit: 10})
		if err != nil || len(ds) != 0 {
			t.Errorf("deliveries after rollback: %v %v", ds, err)
		}

		var d Delivery
		err = de.DB.InTx(ctx, func(tx *sql.Tx) error {
			d, err = e.svc.Enqueue(ctx, tx, wh.ID, "order.created", json.RawMessage(`{"id":2}`))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if j := e.waitJob(d.JobID); j.State != queue.StateCompleted {
			t.Errorf("job %s", j.State)
		}
		if reqs := rc.requests(); len(reqs) != 1 || !strings.Contains(string(reqs[0].body), `"payload":{"id":2}`) {
			t.Errorf("requests %+v", reqs)
		}

		// Bad input and unknown endpoints.
		err = de.DB.InTx(ctx, func(tx *sql.Tx) error {
			_, err := e.svc.Enqueue(ctx, tx, wh.ID, "", json.RawMessage(`[1]`))
			return err
		})
		var ve *apperr.Error
		if !errors.As(err, &ve) || ve.Code != apperr.CodeValidation || len(ve.Fields) != 2 {
			t.Errorf("bad input: %v", err)
		}
		err = de.DB.InTx(ctx, func(tx *sql.Tx) error {
			_, err := e.svc.Enqueue(ctx, tx, 9999, "x", json.RawMessage(`{}`))
			return err
		})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown endpoint: %v", err)
		}
	})
}

func TestReadSnippet(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 600) // 1200 bytes
	got := readSnippet(io.NopCloser(strings.NewReader(long)))
	if len(got) > MaxResponseSnippet || len(got) < MaxResponseSnippet-1 || !strings.HasPrefix(long, got) {
		t.Errorf("snippet of %d bytes", len(got))
	}
	if got := readSnippet(io.NopCloser(strings.NewReader("a\x00b\xffc"))); got != "a\uFFFDb\uFFFDc" {
		t.Errorf("%q", got)
	}
}

// expectRefused checks that delivery d failed at once, permanently, on
// the refusal of addr as reason, and that the receiver got nothing.
func expectRefused(t *testing.T, e *env, d deliveryView, rc *receiver, addr, reason string) {
	t.Helper()
	j := e.waitJob(d.JobID)
	want := fmt.Sprintf("webhook address %s is %s; allow it with --webhook-allow-networks", addr, reason)
	if j.State != queue.StateFailed || j.Attempt != 1 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, want) {
		t.Errorf("job %s after %d attempts: %+v, want failed at once with %q", j.State, j.Attempt, j.Errors, want)
	}
	got := e.delivery(d.ID)
	if got.Status != "failed" || outcomes(got) != "1:failed:0" || got.Attempts[0].Error != want || got.LastError != want {
		t.Errorf("delivery %+v, want failed with %q", got, want)
	}
	if n := rc.hits.Load(); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
}

// TestDeliverResolvedLoopback: a name that passes registration but
// resolves to 127.0.0.1 at delivery is refused at the connection, for
// good, and no request reaches the receiver listening there; with
// loopback allowed, the same endpoint is delivered to.
func TestDeliverResolvedLoopback(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T, de *dbtest.Env, o envOpts) (*env, *receiver, deliveryView, *fakeDNS) {
		dns := newFakeDNS(t, netip.MustParseAddr("127.0.0.1"))
		rc := newReceiver(t, status(200, ""))
		o.resolver = dns.resolver()
		e := newEnv(t, de, o)
		wh := e.createWebhook(rc.urlAt("hooks.example.test", "/in"))
		return e, rc, e.deliver(wh.ID, "ping", `{}`), dns
	}
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
			e, rc, d, dns := setup(t, de, envOpts{publicOnly: true})
			expectRefused(t, e, d, rc, "127.0.0.1", "loopback")
			if dns.queries.Load() == 0 {
				t.Error("the name was never resolved")
			}
		})
	})
	t.Run("allowed", func(t *testing.T) {
		t.Parallel()
		dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
			e, rc, d, _ := setup(t, de, envOpts{allow: []netip.Prefix{loopback}})
			if j := e.waitJob(d.JobID); j.State != queue.StateCompleted || rc.hits.Load() != 1 {
				t.Errorf("job %s %+v, %d requests", j.State, j.Errors, rc.hits.Load())
			}
		})
	})
}

// TestDeliverRebinding: every connection is checked after its own DNS
// lookup. A name that resolved to an allowed address for one delivery
// and re-resolves to the cloud metadata address for the next is refused
// then, before any connection is made.
func TestDeliverRebinding(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		dns := newFakeDNS(t, netip.MustParseAddr("127.0.0.1"))
		rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			// A new connection for every delivery, and so a new lookup.
			w.Header().Set("Connection", "close")
			status(200, "")(n, w, r)
		})
		e := newEnv(t, de, envOpts{allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, resolver: dns.resolver()})
		wh := e.createWebhook(rc.urlAt("rebind.example.test", "/"))
		d := e.deliver(wh.ID, "ping", `{}`)
		if j := e.waitJob(d.JobID); j.State != queue.StateCompleted || rc.hits.Load() != 1 {
			t.Fatalf("first delivery: job %s %+v, %d requests", j.State, j.Errors, rc.hits.Load())
		}
		dns.set(netip.MustParseAddr("169.254.169.254"))
		rc.hits.Store(0)
		d = e.deliver(wh.ID, "ping", `{}`)
		expectRefused(t, e, d, rc, "169.254.169.254", "link-local")
	})
}

// TestDeliverRefusesLocalhost: an endpoint stored while its address was
// allowed (or before addresses were checked) is refused at delivery once
// it is not: localhost, resolved the ordinary way (/etc/hosts), is
// loopback.
func TestDeliverRefusesLocalhost(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		rc := newReceiver(t, status(200, ""))
		e := newEnv(t, de, envOpts{publicOnly: true})
		ep := Endpoint{URL: rc.urlAt("localhost", "/"), Secret: SecretPrefix + "x", CreatedAt: time.Now()}
		if err := e.svc.st.insertEndpoint(context.Background(), e.de.DB.W, &ep); err != nil {
			t.Fatal(err)
		}
		d := e.deliver(ep.ID, "ping", `{}`)
		j := e.waitJob(d.JobID)
		got := e.delivery(d.ID)
		if j.State != queue.StateFailed || j.Attempt != 1 || outcomes(got) != "1:failed:0" ||
			!strings.Contains(got.LastError, "is loopback; allow it with --webhook-allow-networks") {
			t.Errorf("job %s after %d attempts, delivery %+v", j.State, j.Attempt, got)
		}
		if n := rc.hits.Load(); n != 0 {
			t.Errorf("the receiver got %d requests", n)
		}
	})
}

// TestTransport: the deliveries' transport uses no proxy, whatever the
// environment says, and refuses a literal address at the dial.
func TestTransport(t *testing.T) {
	t.Parallel()
	if tr := newTransport(guard{}, nil); tr.Proxy != nil {
		t.Error("the transport uses a proxy")
	}
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	c := &http.Client{Transport: newTransport(guard{}, nil)}
	_, err := c.Get(srv.URL)
	var refused *AddressError
	if !errors.As(err, &refused) || refused.Addr != netip.MustParseAddr("127.0.0.1") || refused.Reason != "loopback" || hits.Load() != 0 {
		t.Errorf("GET %s: %v, %d requests", srv.URL, err, hits.Load())
	}
	c = &http.Client{Transport: newTransport(guard{[]netip.Prefix{loopback}}, nil)}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hits.Load() != 1 {
		t.Errorf("allowed: %d requests", hits.Load())
	}
}
