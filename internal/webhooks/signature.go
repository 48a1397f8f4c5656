package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery.
const (
	// HeaderID carries the delivery id: the same on every attempt, so
	// that a receiver can drop a delivery it has already processed.
	HeaderID = "Kiln-Webhook-Id"
	// HeaderTimestamp carries the Unix time in seconds at which the
	// attempt was signed.
	HeaderTimestamp = "Kiln-Webhook-Timestamp"
	// HeaderSignature carries "v1=" and the hex HMAC-SHA256, keyed by
	// the endpoint's whole secret, of the timestamp, ".", and the body.
	// A receiver accepts any of several comma-separated v1 entries (for
	// a future secret rotation) and ignores other versions.
	HeaderSignature = "Kiln-Signature"
)

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock when [Verify] is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// ErrSignature is wrapped by every error [Verify] returns.
var ErrSignature = errors.New("webhooks: signature check failed")

// maxSignatureHeader bounds the signature header a receiver parses.
const maxSignatureHeader = 4096

// Sign returns the v1 signature of body sent at Unix time ts with
// secret: hex(HMAC-SHA256(secret, ts + "." + body)).
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery a receiver got: the [HeaderTimestamp] must be
// within tolerance of now (zero or less means [DefaultTolerance]), and a
// v1 entry of [HeaderSignature] must be the signature of the timestamp
// and body with secret. It returns nil for a genuine delivery and an
// error wrapping [ErrSignature] saying what is wrong otherwise. Compare
// with the exact bytes received, before any decoding.
func Verify(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	ts, err := parseTimestamp(header.Get(HeaderTimestamp))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSignature, HeaderTimestamp, err)
	}
	sent := time.Unix(ts, 0)
	if d := now.Sub(sent); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s is %s from now, more than the %s allowed", ErrSignature, HeaderTimestamp, d.Round(time.Second), tolerance)
	}
	sigs, err := parseSignatures(header.Get(HeaderSignature))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSignature, HeaderSignature, err)
	}
	want, _ := hex.DecodeString(Sign(secret, ts, body))
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no %s entry matches the body", ErrSignature, HeaderSignature)
}

// parseTimestamp parses decimal Unix seconds.
func parseTimestamp(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("missing")
	}
	if len(s) > 12 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("must be Unix seconds")
	}
	return strconv.ParseInt(s, 10, 64)
}

// parseSignatures returns the v1 signatures of a signature header:
// comma-separated "version=hex" entries, spaces around them allowed;
// entries of other versions are skipped, a malformed v1 entry is an
// error.
func parseSignatures(h string) ([][]byte, error) {
	if h == "" {
		return nil, errors.New("missing")
	}
	if len(h) > maxSignatureHeader {
		return nil, fmt.Errorf("longer than %d bytes", maxSignatureHeader)
	}
	var out [][]byte
	for entry := range strings.SplitSeq(h, ",") {
		entry = strings.TrimSpace(entry)
		ver, val, ok := strings.Cut(entry, "=")
		if !ok || ver == "" {
			return nil, fmt.Errorf("entry %q is not version=signature", entry)
		}
		if ver != "v1" {
			continue
		}
		b, err := hex.DecodeString(val)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("v1 entry is not %d hex digits", 2*sha256.Size)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, errors.New("no v1 entry")
	}
	return out, nil
}
