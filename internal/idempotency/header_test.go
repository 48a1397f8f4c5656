package idempotency

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", MaxKeyLength)
	for _, tc := range []struct {
		in   []string
		key  string
		ok   bool
		fail bool
	}{
		{in: nil},
		{in: []string{`"abc"`}, key: "abc", ok: true},
		{in: []string{`abc`}, key: "abc", ok: true},
		{in: []string{`  "8e03978e-40d5-43e8-bc93-6894a57f9324"  `}, key: "8e03978e-40d5-43e8-bc93-6894a57f9324", ok: true},
		{in: []string{`"a b"`}, key: "a b", ok: true},
		{in: []string{`"a\"b\\c"`}, key: `a"b\c`, ok: true},
		{in: []string{`"` + long + `"`}, key: long, ok: true},
		{in: []string{long}, key: long, ok: true},
		{in: []string{`"a,b"`}, key: "a,b", ok: true},
		{in: []string{`""`}, ok: true, fail: true},
		{in: []string{``}, ok: true, fail: true},
		{in: []string{`   `}, ok: true, fail: true},
		{in: []string{`"` + long + `k"`}, ok: true, fail: true},
		{in: []string{long + "k"}, ok: true, fail: true},
		{in: []string{`"abc`}, ok: true, fail: true},
		{in: []string{`"abc\`}, ok: true, fail: true},
		{in: []string{`"a\nb"`}, ok: true, fail: true},
		{in: []string{"\"a\x01b\""}, ok: true, fail: true},
		{in: []string{"a\x7fb"}, ok: true, fail: true},
		{in: []string{"\"caf\xc3\xa9\""}, ok: true, fail: true},
		{in: []string{`"a", "b"`}, ok: true, fail: true},
		{in: []string{`a, b`}, ok: true, fail: true},
		{in: []string{`"a";p=1`}, ok: true, fail: true},
		{in: []string{`a;p=1`}, ok: true, fail: true},
		{in: []string{`"a" x`}, ok: true, fail: true},
		{in: []string{`a b`}, ok: true, fail: true},
		{in: []string{`a"b`}, ok: true, fail: true},
		{in: []string{`"a"`, `"b"`}, ok: true, fail: true},
	} {
		key, ok, err := parseKey(tc.in)
		if ok != tc.ok || (err != nil) != tc.fail || key != tc.key {
			t.Errorf("parseKey(%q) = %q, %v, %v; want %q, %v, failure %v", tc.in, key, ok, err, tc.key, tc.ok, tc.fail)
		}
	}
}

// sfString serializes k as a Structured Field String.
func sfString(k string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(k) + `"`
}

// FuzzParseKey drives the header parser with any value: it must not
// panic, an accepted key must be 1-255 printable ASCII characters, and a
// key serialized as a string must parse back to itself.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{
		`"abc"`, `abc`, `""`, ``, `"`, `"\`, `"\"`, `"a\"b"`, `"a\x"`, `"a" , "b"`, `a,b`, `"a";b`, `a;b`,
		"\"\x00\"", "\x7f", `"` + strings.Repeat("x", 256) + `"`, strings.Repeat("y", 255), ` "pad" `,
		"\t\"tab\"\t", `"x" y`, `"caf` + "\xc3\xa9" + `"`, strconv.Quote("q"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		key, ok, err := parseKey([]string{v})
		if !ok {
			t.Fatalf("%q: a present header reported absent", v)
		}
		if err != nil {
			if key != "" {
				t.Fatalf("%q: key %q with error %v", v, key, err)
			}
			return
		}
		if len(key) < 1 || len(key) > MaxKeyLength {
			t.Fatalf("%q: key of %d bytes", v, len(key))
		}
		for i := 0; i < len(key); i++ {
			if c := key[i]; c < ' ' || c > '~' {
				t.Fatalf("%q: key %q has byte %#x", v, key, c)
			}
		}
		back, _, err := parseKey([]string{sfString(key)})
		if err != nil || back != key {
			t.Fatalf("%q: key %q serialized as %s parses as %q, %v", v, key, sfString(key), back, err)
		}
	})
}
