package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
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

// FuzzCheckURL: never a panic, on any string; a URL whose host is a
// non-public address in its usual form is refused, with everything
// allowed nothing is refused as an address, and what the odd IPv4 forms
// read agrees with netip on the usual form.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/hooks", "http://127.0.0.1/", "http://2130706433/", "http://0x7f.1/", "http://127.1/",
		"http://0177.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://[fe80::1%25eth0]:80/", "http://localhost./",
		"http://api.localhost/", "http://169.254.169.254/latest/meta-data/", "http://0/", "http://[::]/",
		"http://\uff11\uff12\uff17.0.0.1/", "http://1.2.3.4.5/", "http://0x100000000/", "http://[64:ff9b::7f00:1]/",
		"http://[2002:7f00:1::]/", "http://93.184.215.14/", "http://[2606:4700::1]/", "%zz", "",
	} {
		f.Add(s)
	}
	all := guard{[]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
	f.Fuzz(func(t *testing.T, s string) {
		err := guard{}.checkURL(s)
		var refused *AddressError
		if errors.As(err, &refused) && (refused.Reason == "" || refused.Error() == "" || refused.fieldMessage() == "") {
			t.Fatalf("%q: refusal without a reason: %+v", s, refused)
		}
		if err := all.checkURL(s); errors.As(err, &refused) {
			t.Fatalf("%q: refused with everything allowed: %v", s, err)
		}
		u, perr := url.Parse(s)
		if perr != nil {
			return
		}
		host := u.Hostname()
		if a, aerr := netip.ParseAddr(host); aerr == nil {
			why, _ := classify(a)
			if (why != "") != errors.As(err, &refused) {
				t.Fatalf("%q: address %s is %q, but checkURL says %v", s, a, why, err)
			}
			if a.Is4() && a.Zone() == "" {
				if b, ok := parseIPv4Loose(strings.Split(host, ".")); !ok || b != a {
					t.Fatalf("%q: loose IPv4 reads %s as %s, %v", s, host, b, ok)
				}
			}
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
