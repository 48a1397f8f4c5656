package tokens

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
)

// FuzzParse checks that Parse never panics and accepts only the one
// canonical spelling of a token.
func FuzzParse(f *testing.F) {
	var zero, ones [SecretBytes]byte
	for i := range ones {
		ones[i] = 0xff
	}
	good := format("0123456789ab", ones)
	for _, s := range []string{
		good, format("000000000000", zero), "", "kiln_", "kiln__", good[:len(good)-1], good + "=",
		strings.ToUpper(good), "kiln_0123456789ab_", "kiln_0123456789ab" + strings.Repeat("_", 44),
		"kiln_0123456789ab_" + strings.Repeat("A", 43), "kiln_0123456789ab_" + strings.Repeat("_", 43),
		"kiln_0123456789ab_" + strings.Repeat("/", 43), "kiln_0123456789AB_" + good[18:],
		"kiln_\xff\xfe23456789ab_" + good[18:],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := Parse(s)
		if !ok {
			if id != "" {
				t.Errorf("Parse(%q) failed but returned id %q", s, id)
			}
			return
		}
		if !ValidID(id) {
			t.Errorf("Parse(%q) returned id %q", s, id)
		}
		if back := format(id, secret); back != s {
			t.Errorf("Parse(%q) accepted a spelling that formats back as %q", s, back)
		}
	})
}

// FuzzAuthenticate checks that any string is either the one real token or
// refused as unauthenticated: never another error, never a panic.
func FuzzAuthenticate(f *testing.F) {
	e := dbtest.SQLite(f)
	s := NewService(NewStore(e.DB), Options{})
	f.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	tok, info, err := s.Create(ctx, "fuzz", httpapi.ScopeRead, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{tok, tok[:len(tok)-1] + "A", tok[:len(tok)-1] + "B", "kiln_" + info.ID + "_", "", "Bearer " + tok, strings.Repeat("x", 61)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := s.Authenticate(ctx, in)
		switch {
		case in == tok:
			if err != nil || p.TokenID != info.ID {
				t.Errorf("the real token: %+v, %v", p, err)
			}
		case err == nil:
			t.Errorf("%q authenticated as %+v", in, p)
		case !errors.Is(err, httpapi.ErrUnauthenticated):
			t.Errorf("%q: %v, want ErrUnauthenticated", in, err)
		}
	})
}
