// Package webhooks delivers events to HTTP endpoints that users
// register. POST /api/v1/webhooks/{id}/deliveries (or [Service.Enqueue],
// inside another feature's transaction) stores a delivery and enqueues a
// webhook.deliver job in one transaction; the job POSTs the signed event
// to the endpoint, records every attempt, and leaves retries to the job
// engine. A circuit breaker per destination host stops a dead endpoint
// from taking workers: while it is open, deliveries to that host are put
// off without a request and without using an attempt.
//
// Webhooks reach only public addresses unless [Options].AllowNetworks
// allows a range: an endpoint URL that names a loopback, private,
// link-local or other special address is refused at registration, and
// every delivery's connection is checked after DNS resolution, so that a
// name resolving to such an address fails the delivery for good. No
// proxy is used.
package webhooks

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kilnhq/kiln/internal/apperr"
)

// KindDeliver is the job kind that delivers one webhook.
const KindDeliver = "webhook.deliver"

// Queue is the queue webhook.deliver jobs run on.
const Queue = "webhooks"

// Limits on what an endpoint and a delivery may be.
const (
	MaxURLLength         = 2048
	MaxDescriptionLength = 500 // characters
	MaxEventLength       = 200
	// MaxResponseSnippet is how much of a response body an attempt keeps.
	MaxResponseSnippet = 1 << 10
	// maxDrain is how much more of a response body is read, to let the
	// connection be reused, before it is closed.
	maxDrain = 64 << 10
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// Errors of the service; test for them with errors.Is.
var (
	// ErrNotFound means no endpoint or delivery has the id.
	ErrNotFound = apperr.New(apperr.CodeNotFound, "not found")
)

// DeliveryStatus is where a delivery stands.
type DeliveryStatus string

// The delivery statuses.
const (
	// StatusPending: not yet delivered; its job will try (again).
	StatusPending DeliveryStatus = "pending"
	// StatusDelivered: an attempt got a 2xx answer.
	StatusDelivered DeliveryStatus = "delivered"
	// StatusFailed: the endpoint refused it (a 4xx other than 408 and
	// 429, or a redirect), its address may not be reached, or the
	// attempts ran out.
	StatusFailed DeliveryStatus = "failed"
	// StatusCancelled: its job was cancelled before it was delivered
	// (never stored: derived from the job).
	StatusCancelled DeliveryStatus = "cancelled"
)

// Outcome is what became of one attempt.
type Outcome string

// The outcomes of an attempt.
const (
	// OutcomeDelivered: a 2xx answer.
	OutcomeDelivered Outcome = "delivered"
	// OutcomeRetry: a network error, a timeout, 408, 429 or 5xx; the job
	// tries again.
	OutcomeRetry Outcome = "retry"
	// OutcomeFailed: no retry: the endpoint refused the delivery, its
	// address may not be reached, or it was the last attempt.
	OutcomeFailed Outcome = "failed"
	// OutcomeSnoozed: the host's circuit breaker was open; no request
	// was made and no attempt used.
	OutcomeSnoozed Outcome = "snoozed"
	// OutcomeInterrupted: the job was stopped (cancelled, timed out or
	// shut down) during the request.
	OutcomeInterrupted Outcome = "interrupted"
)

// Endpoint is a registered webhook destination.
type Endpoint struct {
	ID          int64
	URL         string
	Description string
	// Secret signs every delivery; see [Verify].
	Secret    string
	CreatedAt time.Time
}

// SecretHint is the start of the endpoint's secret, enough to tell two
// secrets apart and no more.
func (e Endpoint) SecretHint() string {
	const n = len(SecretPrefix) + 4
	if len(e.Secret) <= n {
		return e.Secret
	}
	return e.Secret[:n] + "…"
}

// Delivery is one event to deliver to one endpoint.
type Delivery struct {
	ID         int64
	EndpointID int64
	Event      string
	// Payload is the event's JSON object, as sent.
	Payload json.RawMessage
	JobID   int64
	Status  DeliveryStatus
	// Attempts counts the attempts recorded, circuit-open ones
	// included.
	Attempts   int
	LastError  string
	CreatedAt  time.Time
	FinishedAt time.Time // zero while pending
}

// Attempt is one recorded try at a delivery.
type Attempt struct {
	// Number counts the delivery's attempts from 1, circuit-open ones
	// included; JobAttempt is the job's attempt it was made in (a
	// snoozed one does not use a job attempt).
	Number     int
	JobAttempt int
	StartedAt  time.Time
	Duration   time.Duration
	// StatusCode is the response's status; 0 when there was none.
	StatusCode int
	// Error says what went wrong ("timeout", "connection refused",
	// "circuit open", "status 500", …); empty when delivered.
	Error   string
	Outcome Outcome
	// ResponseBody is the start of the response body, at most
	// [MaxResponseSnippet] bytes of valid UTF-8.
	ResponseBody string
	// RetryAt is when the delivery is tried next, when known: the end
	// of a circuit breaker's cooldown, or the job's next run for the
	// latest attempt of a pending delivery.
	RetryAt time.Time
}

// validation collects field errors.
type validation struct{ apperr.Fields }

func (v *validation) bad(field, format string, args ...any) { v.Add(field, format, args...) }

func (v *validation) err() error { return v.Err() }

// ValidateURL checks an endpoint URL and returns it normalized (scheme
// and host in lower case). It must be absolute http or https with a
// host, at most [MaxURLLength] bytes, without user info (credentials
// would show in every listing) or fragment, and without spaces or
// control characters.
func ValidateURL(s string) (string, error) {
	switch {
	case s == "":
		return "", errors.New("is required")
	case len(s) > MaxURLLength:
		return "", fmt.Errorf("must be at most %d bytes", MaxURLLength)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return "", errors.New("must not contain spaces or control characters")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New("is not a valid URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("must start with http:// or https://")
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "", errors.New("must name a host, as in https://example.com/hooks")
	case u.User != nil:
		return "", errors.New("must not contain a user name or password; authenticate with the signature instead")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "", errors.New("must not have a #fragment")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", errors.New("has an invalid port")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", errors.New("has an empty port")
	}
	u.Host = strings.ToLower(u.Host)
	out := u.String()
	if len(out) > MaxURLLength {
		return "", fmt.Errorf("must be at most %d bytes", MaxURLLength)
	}
	return out, nil
}

// hostKey is the circuit breaker key of an endpoint URL: its host and
// port, the port left out when it is the scheme's default.
func hostKey(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" || (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, port)
}

// validateDescription checks an endpoint's description.
func validateDescription(v *validation, s string) {
	switch {
	case !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		v.bad("description", "must be UTF-8 text without control characters")
	case utf8.RuneCountInString(s) > MaxDescriptionLength:
		v.bad("description", "must be at most %d characters", MaxDescriptionLength)
	}
}

// validateEvent checks an event name: 1 to [MaxEventLength] letters,
// digits and . _ - :, starting with a letter or digit.
func validateEvent(v *validation, s string) {
	if s == "" {
		v.bad("event", "is required, as in order.confirmed")
		return
	}
	if len(s) > MaxEventLength {
		v.bad("event", "must be at most %d characters", MaxEventLength)
		return
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._-:", rune(c))) {
			v.bad("event", "must be letters, digits and . _ - : starting with a letter or digit, as in order.confirmed")
			return
		}
	}
}

// normalizePayload checks that raw is one JSON object and returns it
// compacted.
func normalizePayload(v *validation, raw json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		v.bad("payload", "is required: a JSON object")
		return nil
	}
	if t[0] != '{' || !utf8.Valid(t) || !json.Valid(t) {
		v.bad("payload", "must be a JSON object")
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, t); err != nil {
		v.bad("payload", "must be a JSON object")
		return nil
	}
	return b.Bytes()
}

// newSecret returns a new signing secret: [SecretPrefix] and 32 random
// bytes in unpadded base64url.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
