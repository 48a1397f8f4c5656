package pgdriver_test

import (
	"strings"
	"testing"

	"github.com/kilnhq/kiln/queue/pgdriver"
)

// FuzzParseURL checks that any --db value is refused or parsed, never
// panics, and never echoes the password in an error.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"postgres://u:secret@h:5432/db?sslmode=disable", "postgresql://h/db?kiln_poll_only=1&kiln_schema=s",
		"postgres://u:secret@h:port/db", "postgres://u:pw@[::1]:5432/db", "postgres://h/db?kiln_x=1",
		"postgres://h/db?pool_max_conns=0", "postgres://h/db?sslmode=maybe&password=secret",
		"host=h password=secret dbname=db", "postgres://%zz", "postgres://u:pw@h/db?kiln_schema=" + strings.Repeat("s", 70),
		"", "postgres://", "mysql://u:pw@h/db",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if pw := password(raw); len(pw) >= 4 && strings.Contains(raw, "://") && strings.Contains(pgdriver.Redact(raw), ":"+pw+"@") {
			t.Errorf("Redact(%q) = %q shows the password", raw, pgdriver.Redact(raw))
		}
		c, err := pgdriver.ParseURL(raw, pgdriver.Options{})
		if err != nil {
			if c != nil {
				t.Errorf("ParseURL(%q) returned a config with error %v", raw, err)
			}
			if pw := password(raw); len(pw) >= 4 && strings.Contains(err.Error(), pw) {
				t.Errorf("ParseURL(%q) error shows the password %q: %v", raw, pw, err)
			}
			return
		}
		if c.Pool == nil || c.Pool.MaxConns < 1 {
			t.Errorf("ParseURL(%q) = %+v", raw, c)
		}
		for k := range c.Pool.ConnConfig.RuntimeParams {
			if strings.HasPrefix(k, "kiln_") {
				t.Errorf("ParseURL(%q) passes %s to the server", raw, k)
			}
		}
	})
}

// password returns the password of a URL (user:password@) or the value of
// the first password= parameter, or "".
func password(raw string) string {
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				return pw
			}
		}
	}
	if _, v, ok := strings.Cut(raw, "password="); ok {
		v, _, _ = strings.Cut(v, " ")
		v, _, _ = strings.Cut(v, "&")
		return v
	}
	return ""
}
