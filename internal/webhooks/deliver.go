package webhooks

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/defaults"
	"github.com/kilnhq/kiln/internal/jsontime"
	"github.com/kilnhq/kiln/internal/metrics"
	"github.com/kilnhq/kiln/internal/resilience"
	"github.com/kilnhq/kiln/queue"
)

// Defaults of [Options].
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 8
	// UserAgent is sent with every delivery.
	UserAgent = "kiln-webhooks/1"
)

// DefaultRetry is the webhook.deliver kind's retry policy: 8 attempts,
// from 10s doubling to at most 1h apart (about 21 minutes from the first
// failure to the last attempt), with the engine's jitter.
var DefaultRetry = queue.RetryPolicy{MaxAttempts: DefaultMaxAttempts, BaseDelay: 10 * time.Second, MaxDelay: time.Hour}

// Retry-After values are clamped to this range.
const (
	minRetryAfter = time.Second
	maxRetryAfter = time.Hour
)

// Options configure webhook delivery. Zero fields take the defaults.
// [NewService] takes the same value, for what registration shares with
// delivery.
type Options struct {
	// AllowNetworks are ranges that webhooks may reach although they are
	// not public (loopback, private, link-local, …; see [AddressError]).
	// By default only public addresses are reached: an endpoint URL
	// naming another address is refused at registration, and every
	// delivery's connection is checked after DNS resolution, so that a
	// name that resolves, or later re-resolves, to such an address is
	// refused too.
	AllowNetworks []netip.Prefix
	// WrapTransport, when set, wraps the transport that sends the
	// requests, as tracing does; what it returns must pass each request
	// on to the transport it is given. That transport connects only to
	// addresses AllowNetworks lets through, and never through a proxy
	// (HTTP_PROXY and the like are ignored: a proxy would connect to
	// addresses nobody checked). Redirects are never followed.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Resolver looks up the endpoints' host names (default: the net
	// package's).
	Resolver *net.Resolver
	// Breakers are the circuit breakers per host; pass the same set to
	// [NewService]. Default: a set with resilience's defaults (5
	// failures in a row open a host's breaker for 30s).
	Breakers *resilience.Breakers
	// Timeout bounds one attempt's request, response body included
	// (default 10s).
	Timeout time.Duration
	// Retry is the kind's retry policy; zero fields take [DefaultRetry]'s.
	Retry queue.RetryPolicy
	// Now tells the time of attempts and signatures; default time.Now.
	Now func() time.Time
	// Metrics, if set, gets kiln_webhook_attempts_total, the attempts
	// by outcome and response status code.
	Metrics prometheus.Registerer
}

// RegisterKinds registers webhook.deliver on w, on queue [Queue]: it
// delivers the delivery its arguments name ({"delivery_id":N}) from db.
// It returns the breakers the deliveries use (o.Breakers, or the set it
// made) for [NewService].
func RegisterKinds(w *queue.Workers, db *database.DB, o Options) *resilience.Breakers {
	d := newDeliverer(db, o)
	w.Handle(KindDeliver, queue.Typed(d.work),
		queue.WithQueue(Queue),
		queue.WithRetry(d.retry),
		// The request's timeout, and time to record the attempt.
		queue.WithTimeout(d.timeout+30*time.Second))
	return d.breakers
}

// deliverer works webhook.deliver jobs.
type deliverer struct {
	st       *store
	client   *http.Client
	breakers *resilience.Breakers
	timeout  time.Duration
	retry    queue.RetryPolicy
	now      func() time.Time
	attempts *prometheus.CounterVec
}

func newDeliverer(db *database.DB, o Options) *deliverer {
	d := &deliverer{st: newStore(db), breakers: o.Breakers, timeout: o.Timeout, retry: o.Retry, now: o.Now}
	d.attempts = metrics.Register(o.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace,
		Subsystem: "webhook",
		Name:      "attempts_total",
		Help:      "Webhook delivery attempts by outcome and the receiver's status code (none when there was no response).",
	}, []string{"outcome", "code"}))
	var rt http.RoundTripper = newTransport(guard{o.AllowNetworks}, o.Resolver)
	if o.WrapTransport != nil {
		rt = o.WrapTransport(rt)
	}
	d.client = &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if d.breakers == nil {
		d.breakers = resilience.NewBreakers(resilience.BreakerOptions{})
	}
	defaults.Positive(&d.timeout, DefaultTimeout)
	d.retry.MaxAttempts = cmp.Or(d.retry.MaxAttempts, DefaultRetry.MaxAttempts)
	d.retry.BaseDelay = cmp.Or(d.retry.BaseDelay, DefaultRetry.BaseDelay)
	d.retry.MaxDelay = cmp.Or(d.retry.MaxDelay, DefaultRetry.MaxDelay)
	if d.now == nil {
		d.now = time.Now
	}
	return d
}

// newTransport returns the transport of deliveries: it connects only to
// addresses g lets through, checked by the dialer at every connection
// after DNS resolution (so a name that re-resolves to another address is
// checked again), and uses no proxy. Its other settings are
// http.DefaultTransport's.
func newTransport(g guard, r *net.Resolver) *http.Transport {
	dialer := &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Resolver:  r,
		Control:   g.control,
	}
	return &http.Transport{
		// No proxy: it would connect on our behalf to addresses the
		// dialer never sees.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// message is the JSON body of a delivery.
type message struct {
	ID        int64           `json:"id"`
	Event     string          `json:"event"`
	CreatedAt jsontime.Time   `json:"created_at"`
	Payload   json.RawMessage `json:"payload"`
}

// result is a webhook.deliver job's result.
type result struct {
	DeliveryID int64 `json:"delivery_id"`
	StatusCode int   `json:"status_code"`
	Attempt    int   `json:"attempt"`
}

// work makes one attempt at a delivery. See the package documentation
// and the outcome rules on [Outcome].
func (d *deliverer) work(ctx context.Context, job *queue.Job, args deliverArgs) error {
	t, err := d.st.target(ctx, args.DeliveryID)
	if errors.Is(err, ErrNotFound) {
		return queue.Cancel(fmt.Errorf("webhook delivery %d no longer exists (its endpoint was deleted)", args.DeliveryID))
	}
	if err != nil {
		return err
	}
	switch t.Status {
	case StatusDelivered:
		// An earlier attempt delivered it but did not finish the job.
		return nil
	case StatusFailed:
		return queue.Permanent(fmt.Errorf("webhook delivery %d already failed: %s", t.ID, t.LastError))
	}
	key := hostKey(t.URL)
	done, err := d.breakers.Allow(key)
	if err != nil {
		var oe *resilience.OpenError
		if !errors.As(err, &oe) {
			return err
		}
		now := d.now()
		a := Attempt{JobAttempt: job.Attempt, StartedAt: now, Error: "circuit open", Outcome: OutcomeSnoozed, RetryAt: oe.Until}
		if _, err := d.record(ctx, t, a, StatusPending); err != nil {
			return err
		}
		return queue.Snooze(max(oe.Until.Sub(now), time.Second))
	}
	a, outcome := d.send(ctx, t)
	a.JobAttempt = job.Attempt
	done(outcome.breaker)

	status := StatusPending
	switch {
	case a.Outcome == OutcomeDelivered:
		status = StatusDelivered
	case a.Outcome == OutcomeFailed:
		status = StatusFailed
	case a.Outcome == OutcomeRetry && job.Attempt >= job.MaxAttempts:
		a.Outcome, status = OutcomeFailed, StatusFailed
		a.Error += fmt.Sprintf(" (attempt %d of %d: giving up)", job.Attempt, job.MaxAttempts)
	}
	n, err := d.record(ctx, t, a, status)
	if err != nil {
		if a.Outcome == OutcomeDelivered {
			// Delivered but not recorded: the next attempt delivers it
			// again, with the same Kiln-Webhook-Id for the receiver to
			// drop.
			job.Logger().Warn("delivered but could not record it", "delivery_id", t.ID, "err", err)
		}
		return err
	}
	switch a.Outcome {
	case OutcomeDelivered:
		return job.SetResult(result{DeliveryID: t.ID, StatusCode: a.StatusCode, Attempt: n})
	case OutcomeFailed:
		return queue.Permanent(fmt.Errorf("webhook delivery %d: %s", t.ID, a.Error))
	}
	err = fmt.Errorf("webhook delivery %d: %s", t.ID, a.Error)
	if outcome.retryAfter > 0 {
		return queue.RetryAfter(err, outcome.retryAfter)
	}
	return err
}

// record stores an attempt with a context of its own, so that an
// attempt cut short by the job's context is still recorded.
func (d *deliverer) record(ctx context.Context, t target, a Attempt, status DeliveryStatus) (int, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	code := "none"
	if a.StatusCode != 0 {
		code = strconv.Itoa(a.StatusCode)
	}
	d.attempts.WithLabelValues(string(a.Outcome), code).Inc()
	return d.st.record(rctx, t.ID, a, status, d.now())
}

// sendOutcome is what an attempt tells the breaker and the engine.
type sendOutcome struct {
	breaker    resilience.Result
	retryAfter time.Duration
}

// send POSTs t's message to its endpoint and classifies the answer.
func (d *deliverer) send(ctx context.Context, t target) (Attempt, sendOutcome) {
	start := d.now()
	a := Attempt{StartedAt: start}
	finish := func() { a.Duration = max(d.now().Sub(start), 0) }
	body, err := json.Marshal(message{ID: t.ID, Event: t.Event, CreatedAt: jsontime.Time(t.CreatedAt), Payload: t.Payload})
	if err != nil {
		a.Error, a.Outcome = "encode the message: "+err.Error(), OutcomeFailed
		return a, sendOutcome{breaker: resilience.Ignore}
	}
	actx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		a.Error, a.Outcome = "bad endpoint URL: "+err.Error(), OutcomeFailed
		return a, sendOutcome{breaker: resilience.Ignore}
	}
	ts := start.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderID, strconv.FormatInt(t.ID, 10))
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, "v1="+Sign(t.Secret, ts, body))

	resp, err := d.client.Do(req)
	if err != nil {
		finish()
		var refused *AddressError
		if errors.As(err, &refused) {
			// Refused before connecting: no retry would change that.
			a.Error, a.Outcome = refused.Error(), OutcomeFailed
			return a, sendOutcome{breaker: resilience.Ignore}
		}
		if ctx.Err() != nil {
			// The job was stopped, not the endpoint at fault.
			a.Error, a.Outcome = "interrupted: "+context.Cause(ctx).Error(), OutcomeInterrupted
			return a, sendOutcome{breaker: resilience.Ignore}
		}
		a.Error, a.Outcome = describe(err, actx, d.timeout), OutcomeRetry
		return a, sendOutcome{breaker: resilience.Failure}
	}
	// The status decides; a body cut short by the timeout does not
	// change it.
	a.ResponseBody = readSnippet(resp.Body)
	finish()
	a.StatusCode = resp.StatusCode
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		a.Outcome = OutcomeDelivered
		return a, sendOutcome{breaker: resilience.Success}
	case code >= 300 && code < 400:
		loc := resp.Header.Get("Location")
		a.Error, a.Outcome = fmt.Sprintf("status %d: redirects are not followed; point the endpoint at the final URL %q", code, truncate(loc, 200)), OutcomeFailed
		return a, sendOutcome{breaker: resilience.Success}
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		a.Error, a.Outcome = fmt.Sprintf("status %d", code), OutcomeRetry
		out := sendOutcome{breaker: resilience.Failure}
		if ra, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), d.now()); ok {
			out.retryAfter = ra
			a.Error += fmt.Sprintf(" (Retry-After %s)", ra)
		}
		return a, out
	default:
		a.Error, a.Outcome = fmt.Sprintf("status %d: the endpoint refused the delivery", code), OutcomeFailed
		return a, sendOutcome{breaker: resilience.Success}
	}
}

// readSnippet reads up to MaxResponseSnippet bytes of body as valid
// UTF-8, then drains up to maxDrain more so that the connection can be
// reused, and closes it.
func readSnippet(body io.ReadCloser) string {
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, MaxResponseSnippet))
	if err == nil {
		_, _ = io.CopyN(io.Discard, body, maxDrain)
	}
	return cleanText(b, MaxResponseSnippet)
}

// cleanText returns b as valid UTF-8 without NUL bytes, cut to at most
// n bytes on a character boundary.
func cleanText(b []byte, n int) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	return truncate(s, n)
}

// truncate cuts s to at most n bytes on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// describe says in a few words why a request got no answer.
func describe(err error, actx context.Context, timeout time.Duration) string {
	var (
		dns  *net.DNSError
		cert *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		host x509.HostnameError
		ne   net.Error
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || actx.Err() != nil ||
		(errors.As(err, &ne) && ne.Timeout()):
		return fmt.Sprintf("timeout: no answer within %s", timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by peer"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return "dns: no such host " + dns.Name
		}
		return "dns: " + dns.Error()
	case errors.As(err, &cert), errors.As(err, &ua), errors.As(err, &host):
		return "tls: " + unwrapURL(err).Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without an answer"
	}
	return truncate(unwrapURL(err).Error(), 500)
}

// unwrapURL drops the "Post \"url\": " that net/http puts before its
// errors.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// ParseRetryAfter parses a Retry-After header: delay-seconds or an HTTP
// date, relative to now. The delay is clamped to [1s, 1h]; ok is false
// when the header is absent or malformed.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 64 {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		if strings.TrimLeft(v, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > int64(maxRetryAfter/time.Second) {
			// Too large to represent, or past the cap anyway.
			return maxRetryAfter, true
		}
		d = time.Duration(n) * time.Second
	} else {
		t, err := http.ParseTime(v)
		if err != nil {
			return 0, false
		}
		d = t.Sub(now)
	}
	return min(max(d, minRetryAfter), maxRetryAfter), true
}
