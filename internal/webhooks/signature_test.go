package webhooks

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func signed(secret string, ts int64, body string) http.Header {
	h := http.Header{}
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, "v1="+Sign(secret, ts, []byte(body)))
	return h
}

func TestSignKnownValue(t *testing.T) {
	t.Parallel()
	// HMAC-SHA256 keyed by "whsec_test" of "1700000000.{}", as openssl
	// computes it: echo -n '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
	const want = "35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
	if got := Sign("whsec_test", 1700000000, []byte("{}")); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	secret, err := newSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	body := `{"id":1,"event":"x","payload":{}}`
	if err := Verify(secret, signed(secret, now.Unix(), body), []byte(body), now, 0); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	// Several entries, other versions ignored: any v1 match is enough.
	h := signed(secret, now.Unix(), body)
	h.Set(HeaderSignature, "v0=zz, v1="+strings.Repeat("ab", 32)+" , "+h.Get(HeaderSignature))
	if err := Verify(secret, h, []byte(body), now, 0); err != nil {
		t.Errorf("several entries: %v", err)
	}
	for name, c := range map[string]struct {
		header func() http.Header
		body   string
		now    time.Time
		want   string
	}{
		"tampered body":   {func() http.Header { return signed(secret, now.Unix(), body) }, body + " ", now, "no Kiln-Signature entry matches"},
		"other secret":    {func() http.Header { return signed(secret+"x", now.Unix(), body) }, body, now, "no Kiln-Signature entry matches"},
		"too old":         {func() http.Header { return signed(secret, now.Unix(), body) }, body, now.Add(6 * time.Minute), "from now"},
		"from the future": {func() http.Header { return signed(secret, now.Unix(), body) }, body, now.Add(-6 * time.Minute), "from now"},
		"no timestamp": {func() http.Header {
			h := signed(secret, now.Unix(), body)
			h.Del(HeaderTimestamp)
			return h
		}, body, now, "missing"},
		"timestamp changed": {func() http.Header {
			h := signed(secret, now.Unix(), body)
			h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return h
		}, body, now, "no Kiln-Signature entry matches"},
		"signed timestamp": {func() http.Header {
			h := signed(secret, now.Unix(), body)
			h.Set(HeaderTimestamp, "-5")
			return h
		}, body, now, "Unix seconds"},
		"no signature": {func() http.Header {
			h := signed(secret, now.Unix(), body)
			h.Del(HeaderSignature)
			return h
		}, body, now, "missing"},
		"short signature": {func() http.Header {
			h := signed(secret, now.Unix(), body)
			h.Set(HeaderSignature, "v1=abcd")
			return h
		}, body, now, "hex digits"},
		"no v1": {func() http.Header {
			h := signed(secret, now.Unix(), body)
			h.Set(HeaderSignature, "v2="+Sign(secret, now.Unix(), []byte(body)))
			return h
		}, body, now, "no v1 entry"},
		"no equals": {func() http.Header {
			h := signed(secret, now.Unix(), body)
			h.Set(HeaderSignature, Sign(secret, now.Unix(), []byte(body)))
			return h
		}, body, now, "not version=signature"},
	} {
		err := Verify(secret, c.header(), []byte(c.body), c.now, 0)
		if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an ErrSignature saying %q", name, err, c.want)
		}
	}
	// A wider tolerance accepts an older delivery.
	if err := Verify(secret, signed(secret, now.Unix(), body), []byte(body), now.Add(6*time.Minute), 10*time.Minute); err != nil {
		t.Errorf("tolerance 10m: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"7":                              7 * time.Second,
		" 120 ":                          2 * time.Minute,
		"0":                              time.Second, // clamped up
		"86400":                          time.Hour,   // clamped down
		"99999999999999999999999":        time.Hour,
		"Sun, 01 Mar 2026 12:00:30 GMT":  30 * time.Second,
		"Sun, 01 Mar 2026 11:00:00 GMT":  time.Second, // in the past
		"Sunday, 01-Mar-26 12:10:00 GMT": 10 * time.Minute,
	} {
		if got, ok := ParseRetryAfter(v, now); !ok || got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "-1", "1.5", "7s", "soon", "+7", "Sun, 01 Mar 2026", strings.Repeat("9", 65)} {
		if d, ok := ParseRetryAfter(v, now); ok {
			t.Errorf("ParseRetryAfter(%q) = %s, want not ok", v, d)
		}
	}
}

func TestValidateURLAndHostKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][2]string{
		"https://example.com":         {"https://example.com", "example.com"},
		"HTTP://EXAMPLE.com:80/a?b#":  {"", ""},
		"http://Example.com:80/A?b=C": {"http://example.com:80/A?b=C", "example.com"},
		"https://example.com:443/":    {"https://example.com:443/", "example.com"},
		"https://example.com:8443/":   {"https://example.com:8443/", "example.com:8443"},
		"http://[::1]:8080/x":         {"http://[::1]:8080/x", "[::1]:8080"},
		"http://[::1]/x":              {"http://[::1]/x", "[::1]"},
		"http://127.0.0.1:5/":         {"http://127.0.0.1:5/", "127.0.0.1:5"},
		"https://example.com:/":       {"", ""},
		"https://example.com:0/":      {"", ""},
		"mailto:someone@example.com":  {"", ""},
		"https:example.com":           {"", ""},
		"https://exa mple.com/":       {"", ""},
		"https://example.com/\x7f":    {"", ""},
		"https://user@example.com/":   {"", ""},
		"https://example.com/path%zz": {"", ""},
		"":                            {"", ""},
	} {
		got, err := ValidateURL(in)
		if got != want[0] || (err == nil) != (want[0] != "") {
			t.Errorf("ValidateURL(%q) = %q, %v; want %q", in, got, err, want[0])
			continue
		}
		if err == nil {
			if k := hostKey(got); k != want[1] {
				t.Errorf("hostKey(%q) = %q, want %q", got, k, want[1])
			}
		}
	}
}
