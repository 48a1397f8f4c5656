package webhooks

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzValidateURL: never a panic; what is accepted is a short, absolute
// http(s) URL with a host, that validates again to itself.
func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/hooks", "http://127.0.0.1:8080/x?y=1", "HTTPS://EXAMPLE.COM", "http://[::1]:80/",
		"ftp://x", "https://", "https://u:p@x/", "https://x/#f", "https://x:99999", "https://x:/", "//x/y", "x",
		"https://ex%41mple.com/", "http://[::1", "https://x/\u00e9", "http://x\x00/", "https://x?" + strings.Repeat("a", 3000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ValidateURL(s)
		if err != nil {
			if got != "" {
				t.Fatalf("%q: error %v with result %q", s, err, got)
			}
			return
		}
		if len(got) > MaxURLLength || !utf8.ValidString(got) {
			t.Fatalf("%q: accepted %q", s, got)
		}
		u, err := url.Parse(got)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || u.Fragment != "" {
			t.Fatalf("%q: accepted %q (%v)", s, got, err)
		}
		again, err := ValidateURL(got)
		if err != nil || again != got {
			t.Fatalf("%q: accepted %q, which validates to %q, %v", s, got, again, err)
		}
		if k := hostKey(got); k == "" {
			t.Fatalf("%q: empty breaker key", got)
		}
		if _, err := http.NewRequest("POST", got, nil); err != nil {
			t.Fatalf("%q: accepted but net/http refuses it: %v", got, err)
		}
	})
}

// FuzzParseRetryAfter: never a panic; an accepted value is within
// [1s, 1h].
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"7", "0", "-1", "3600", "86400", "1e3", "Wed, 21 Oct 2015 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "", " 5 ", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if ok && (d < time.Second || d > time.Hour) {
			t.Fatalf("%q: %s outside [1s, 1h]", s, d)
		}
		if !ok && d != 0 {
			t.Fatalf("%q: not ok with %s", s, d)
		}
	})
}

// FuzzVerify: never a panic on any signature and timestamp headers, and
// only the genuine signature of the body passes.
func FuzzVerify(f *testing.F) {
	const secret = "whsec_fuzz"
	now := time.Unix(1_800_000_000, 0)
	genuine := "v1=" + Sign(secret, now.Unix(), []byte("{}"))
	for _, s := range [][2]string{
		{"1800000000", genuine}, {"1800000000", "v0=x," + genuine}, {"1800000000", " v1=00 ,v1="}, {"", ""},
		{"18e8", genuine}, {"-1", genuine}, {"1800000000", "v1"}, {"1800000000", "=,=,"}, {"99999999999999999999", genuine},
	} {
		f.Add(s[0], s[1], "{}")
	}
	f.Fuzz(func(t *testing.T, ts, sig, body string) {
		h := http.Header{}
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		err := Verify(secret, h, []byte(body), now, time.Minute)
		if err != nil {
			return
		}
		// Passed: the timestamp is near now, and one v1 entry is the
		// signature of that timestamp and body.
		n, perr := parseTimestamp(ts)
		if perr != nil || now.Sub(time.Unix(n, 0)).Abs() > time.Minute {
			t.Fatalf("accepted timestamp %q", ts)
		}
		if !strings.Contains(strings.ToLower(sig), Sign(secret, n, []byte(body))) {
			t.Fatalf("accepted %q for body %q", sig, body)
		}
	})
}

// FuzzDeliveryInput: never a panic; an accepted event is a short name
// and an accepted payload a compact JSON object.
func FuzzDeliveryInput(f *testing.F) {
	for _, s := range [][2]string{
		{"order.confirmed", `{"a":1}`}, {"", "null"}, {"a b", "[]"}, {".x", `{"a": [1, 2, {"b": null}]}`},
		{"x:y-z_1", ` { } `}, {"é", `{"a":"\u00e9"}`}, {"x", `{"a":1}{}`}, {"x", "{\"a\":\"\xff\"}"}, {"x", `{"a":1e400}`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, event, payload string) {
		var v validation
		validateEvent(&v, event)
		out := normalizePayload(&v, json.RawMessage(payload))
		if err := v.err(); err != nil {
			return
		}
		if event == "" || len(event) > MaxEventLength || strings.ContainsAny(event, " /\x00") {
			t.Fatalf("accepted event %q", event)
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber() // 1e400 is valid JSON
		if err := dec.Decode(&m); err != nil || m == nil || !utf8.Valid(out) {
			t.Fatalf("accepted payload %q as %q: %v", payload, out, err)
		}
		if again := normalizePayload(&v, out); string(again) != string(out) {
			t.Fatalf("payload %q not compact: %q", out, again)
		}
	})
}

// FuzzParseList: never a panic; accepted values are in range.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"", "limit=10", "limit=0", "after=5&limit=500", "limit=501", "after=-1", "limit=1&limit=2", "x=1", "%zz", "limit=+5", "after=9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		p, err := parseList(q)
		if err != nil {
			return
		}
		if p.Limit < 1 || p.Limit > MaxListLimit || p.AfterID < 0 {
			t.Fatalf("%q: %+v", q, p)
		}
	})
}
