package tokens

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
)

// newClock returns a settable clock shared by the services of a test.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newService returns a service on db with clk, closed when the test ends
// (before the database is).
func newService(t testing.TB, db *database.DB, clk *testutil.Clock, opts Options) *Service {
	t.Helper()
	opts.Now = clk.Now
	s := NewService(NewStore(db), opts)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustCreate(t *testing.T, s *Service, name string, scope httpapi.Scope, ttl time.Duration) (string, Token) {
	t.Helper()
	tok, info, err := s.Create(ctxT(t), name, scope, ttl)
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return tok, info
}

// unauthenticated checks that err is a 401 that does not show token's
// secret.
func unauthenticated(t *testing.T, what, token string, err error) {
	t.Helper()
	if !errors.Is(err, httpapi.ErrUnauthenticated) {
		t.Errorf("%s: error %v, want one wrapping ErrUnauthenticated", what, err)
		return
	}
	if _, secret, ok := strings.Cut(strings.TrimPrefix(token, Prefix), "_"); ok && len(secret) > 8 && strings.Contains(err.Error(), secret) {
		t.Errorf("%s: error shows the secret: %v", what, err)
	}
}

var tokenRE = regexp.MustCompile(`^kiln_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$`)

func TestCreateAuthenticateList(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		clk := newClock()
		s := newService(t, e.DB, clk, Options{})

		tok, info, err := s.Create(ctx, "ci deploy", httpapi.ScopeWrite, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !tokenRE.MatchString(tok) {
			t.Fatalf("token %q does not have the documented form", tok)
		}
		if info.ID != tok[5:17] || info.Name != "ci deploy" || info.Scope != httpapi.ScopeWrite ||
			!info.CreatedAt.Equal(clk.Now().Truncate(time.Microsecond)) || !info.ExpiresAt.Equal(info.CreatedAt.Add(24*time.Hour)) ||
			info.Revoked() || !info.LastUsedAt.IsZero() {
			t.Errorf("created %+v", info)
		}
		p, err := s.Authenticate(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if p != (httpapi.Principal{TokenID: info.ID, Name: "ci deploy", Scope: httpapi.ScopeWrite}) {
			t.Errorf("principal %+v", p)
		}

		// A second token that never expires, created later.
		clk.Advance(time.Second)
		_, other := mustCreate(t, s, "", httpapi.ScopeRead, 0)
		if !other.ExpiresAt.IsZero() {
			t.Errorf("ttl 0 expires at %s", other.ExpiresAt)
		}
		list, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != other.ID || list[1].ID != info.ID {
			t.Fatalf("list %+v, want newest first", list)
		}
		if got := list[1]; got.Name != info.Name || got.Scope != info.Scope || !got.CreatedAt.Equal(info.CreatedAt) || !got.ExpiresAt.Equal(info.ExpiresAt) {
			t.Errorf("listed %+v, created %+v", got, info)
		}
		got, err := s.Get(ctx, info.ID)
		if err != nil || got.ID != info.ID {
			t.Errorf("get: %+v, %v", got, err)
		}
		if _, err := s.Get(ctx, "000000000000"); !errors.Is(err, ErrNotFound) {
			t.Errorf("get unknown: %v", err)
		}
		if n, err := s.Count(ctx); err != nil || n != 2 {
			t.Errorf("count %d, %v; want 2", n, err)
		}
	})
}

func TestOnlyTheHashIsStored(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		s := newService(t, e.DB, newClock(), Options{})
		tok, info := mustCreate(t, s, "n", httpapi.ScopeAdmin, 0)
		id, secret, ok := Parse(tok)
		if !ok || id != info.ID {
			t.Fatalf("parse %q: %q %v", tok, id, ok)
		}
		var stored []byte
		if err := e.DB.R.QueryRowContext(ctx, e.DB.Rebind("SELECT secret_hash FROM api_tokens WHERE id = ?"), id).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256(secret[:])
		if !bytes.Equal(stored, want[:]) {
			t.Errorf("stored %x, want SHA-256 of the secret %x", stored, want)
		}
		encoded := tok[len(Prefix)+IDLen+1:]
		if bytes.Contains(stored, secret[:]) || bytes.Contains(stored, []byte(encoded)) {
			t.Error("the secret is stored in plain")
		}
		// No text column holds the secret either.
		var name, scope string
		if err := e.DB.R.QueryRowContext(ctx, e.DB.Rebind("SELECT name, scope FROM api_tokens WHERE id = ?"), id).Scan(&name, &scope); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(name+scope, encoded) {
			t.Error("the secret is stored in a text column")
		}
	})
}

func TestAuthenticateRejects(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		clk := newClock()
		s := newService(t, e.DB, clk, Options{})
		tok, info := mustCreate(t, s, "n", httpapi.ScopeRead, time.Hour)

		_, otherSecret, _ := Parse(mustToken(t, s))
		wrong := format(info.ID, otherSecret)
		_, err := s.Authenticate(ctx, wrong)
		unauthenticated(t, "wrong secret", wrong, err)

		unknown := format("0123456789ab", otherSecret)
		_, err = s.Authenticate(ctx, unknown)
		unauthenticated(t, "unknown id", unknown, err)
		// Asked again, the unknown id is answered from the cache: still 401.
		_, err = s.Authenticate(ctx, unknown)
		unauthenticated(t, "unknown id again", unknown, err)

		secret := tok[len(Prefix)+IDLen+1:]
		for _, bad := range []string{
			"",
			"kiln_",
			tok[:len(tok)-1],
			tok + "A",
			strings.ToUpper(tok[:17]) + tok[17:],
			"Kiln_" + tok[5:],
			"kiln-" + tok[5:],
			Prefix + info.ID + "-" + secret,
			Prefix + strings.ToUpper(info.ID) + "_" + secret,
			Prefix + "0123456789ag_" + secret,
			Prefix + info.ID + "_" + secret[:42] + "=",
			Prefix + info.ID + "_" + secret[:42] + "+",
			Prefix + info.ID + "_" + secret[:42] + "/",
			" " + tok,
			tok + "\n",
			"Bearer " + tok,
			strings.Repeat("k", 10000),
			"kiln_\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00_" + secret,
		} {
			p, err := s.Authenticate(ctx, bad)
			if err == nil {
				t.Errorf("%q authenticated as %+v", bad, p)
				continue
			}
			unauthenticated(t, fmt.Sprintf("%q", bad), tok, err)
		}
		// A non-canonical spelling of the same secret bytes (other low
		// bits in the last character) is refused.
		last := secret[len(secret)-1]
		for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
			if c == last {
				continue
			}
			alt := Prefix + info.ID + "_" + secret[:42] + string(c)
			if _, err := s.Authenticate(ctx, alt); err == nil {
				t.Errorf("%q authenticated, want only the canonical spelling", alt)
			}
		}

		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatalf("the good token: %v", err)
		}
		// Expiry needs no database read: the cached expiry is checked
		// against the clock on every request.
		clk.Advance(time.Hour - time.Microsecond)
		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatalf("just before expiry: %v", err)
		}
		clk.Advance(time.Microsecond)
		_, err = s.Authenticate(ctx, tok)
		unauthenticated(t, "expired", tok, err)
		if n, err := s.Count(ctx); err != nil || n != 1 {
			t.Errorf("count %d, %v; want 1 (the expired token is not counted)", n, err)
		}

		tok2, info2 := mustCreate(t, s, "n2", httpapi.ScopeRead, 0)
		if _, err := s.Authenticate(ctx, tok2); err != nil {
			t.Fatal(err)
		}
		if err := s.Revoke(ctx, info2.ID); err != nil {
			t.Fatal(err)
		}
		// Revocation takes effect at once in the process that revoked.
		_, err = s.Authenticate(ctx, tok2)
		unauthenticated(t, "revoked", tok2, err)
		if n, err := s.Count(ctx); err != nil || n != 1 {
			t.Errorf("count %d, %v; want 1", n, err)
		}
	})
}

// mustToken returns a new token.
func mustToken(t *testing.T, s *Service) string {
	t.Helper()
	tok, _ := mustCreate(t, s, "x", httpapi.ScopeRead, 0)
	return tok
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		clk := newClock()
		s := newService(t, e.DB, clk, Options{})
		_, info := mustCreate(t, s, "n", httpapi.ScopeAdmin, 0)
		for _, id := range []string{"000000000000", "nope", "", info.ID + "0", strings.ToUpper(info.ID)} {
			if err := s.Revoke(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("revoke %q: %v, want ErrNotFound", id, err)
			}
		}
		if err := s.Revoke(ctx, info.ID); err != nil {
			t.Fatal(err)
		}
		first := clk.Now().Truncate(time.Microsecond)
		clk.Advance(time.Minute)
		if err := s.Revoke(ctx, info.ID); err != nil {
			t.Errorf("revoking twice: %v", err)
		}
		got, err := s.Get(ctx, info.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.RevokedAt.Equal(first) || got.State(clk.Now()) != "revoked" {
			t.Errorf("revoked at %s (state %s), want %s: revoking again must keep the first time", got.RevokedAt, got.State(clk.Now()), first)
		}
	})
}

func TestCreateInvalid(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		s := newService(t, e.DB, newClock(), Options{})
		for _, tc := range []struct {
			name  string
			scope httpapi.Scope
			ttl   time.Duration
			want  string
		}{
			{"x", httpapi.ScopePublic, 0, "scope public"},
			{"x", httpapi.Scope(9), 0, "scope Scope(9)"},
			{"x", httpapi.ScopeRead, -time.Second, "negative"},
			{strings.Repeat("é", MaxNameLen+1), httpapi.ScopeRead, 0, "101 characters"},
			{"a\nb", httpapi.ScopeRead, 0, "control"},
			{"a\u200bb", httpapi.ScopeRead, 0, "control"},
			{"\xff", httpapi.ScopeRead, 0, "UTF-8"},
		} {
			_, _, err := s.Create(ctx, tc.name, tc.scope, tc.ttl)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create(%q, %s, %s): %v, want ErrInvalid mentioning %q", tc.name, tc.scope, tc.ttl, err, tc.want)
			}
		}
		if list, err := s.List(ctx); err != nil || len(list) != 0 {
			t.Errorf("rejected creates stored %v (%v)", list, err)
		}
		if _, _, err := s.Create(ctx, strings.Repeat("é", MaxNameLen), httpapi.ScopeRead, 0); err != nil {
			t.Errorf("longest name: %v", err)
		}
	})
}

// TestCacheTTL shows that a token is read from the database at most once
// per TTL, and that a revocation by another process is noticed when the
// TTL has passed.
func TestCacheTTL(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		clk := newClock()
		api := newService(t, e.DB, clk, Options{CacheTTL: 5 * time.Second})
		cli := newService(t, e.DB, clk, Options{CacheTTL: 5 * time.Second})
		tok, info := mustCreate(t, cli, "n", httpapi.ScopeWrite, 0)
		tok2, info2 := mustCreate(t, cli, "n2", httpapi.ScopeWrite, 0)

		for _, tk := range []string{tok, tok2} {
			if _, err := api.Authenticate(ctx, tk); err != nil {
				t.Fatal(err)
			}
		}
		// Revoked elsewhere: the API process still trusts its cache...
		if err := cli.Revoke(ctx, info.ID); err != nil {
			t.Fatal(err)
		}
		// ...and serves from memory: even a row that is gone is not
		// noticed before the TTL.
		if _, err := e.DB.W.ExecContext(ctx, e.DB.Rebind("DELETE FROM api_tokens WHERE id = ?"), info2.ID); err != nil {
			t.Fatal(err)
		}
		clk.Advance(5*time.Second - time.Microsecond)
		for _, tk := range []string{tok, tok2} {
			if _, err := api.Authenticate(ctx, tk); err != nil {
				t.Fatalf("within the TTL: %v", err)
			}
		}
		// The wrong secret is still refused from the cache.
		_, other, _ := Parse(mustToken(t, cli))
		_, err := api.Authenticate(ctx, format(info2.ID, other))
		unauthenticated(t, "wrong secret, cached token", "", err)

		clk.Advance(time.Microsecond)
		_, err = api.Authenticate(ctx, tok)
		unauthenticated(t, "revoked elsewhere, after the TTL", tok, err)
		_, err = api.Authenticate(ctx, tok2)
		unauthenticated(t, "deleted, after the TTL", tok2, err)

		// With the cache disabled, a revocation elsewhere is seen at once.
		nocache := newService(t, e.DB, clk, Options{CacheTTL: -1})
		tok3, info3 := mustCreate(t, cli, "n3", httpapi.ScopeRead, 0)
		if _, err := nocache.Authenticate(ctx, tok3); err != nil {
			t.Fatal(err)
		}
		if err := cli.Revoke(ctx, info3.ID); err != nil {
			t.Fatal(err)
		}
		_, err = nocache.Authenticate(ctx, tok3)
		unauthenticated(t, "no cache", tok3, err)
	})
}

// TestUnknownThenCreated checks that an id cached as unknown does not
// hide a token created in the same process.
func TestUnknownThenCreated(t *testing.T) {
	t.Parallel()
	e := dbtest.SQLite(t)
	ctx := ctxT(t)
	s := newService(t, e.DB, newClock(), Options{})
	tok := mustToken(t, s)
	id, _, _ := Parse(tok)
	s.mu.Lock()
	delete(s.known, id)
	s.unknown[id] = s.now()
	s.mu.Unlock()
	// Another process's token with an id this one believes unknown is
	// refused until the TTL ends; a token this process creates is not.
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, httpapi.ErrUnauthenticated) {
		t.Fatalf("cached as unknown: %v", err)
	}
	s.forget(id)
	if _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatalf("after forget: %v", err)
	}
}

func TestLastUsed(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		clk := newClock()
		s := newService(t, e.DB, clk, Options{})
		tok, info := mustCreate(t, s, "n", httpapi.ScopeRead, 0)
		lastUsed := func() time.Time {
			t.Helper()
			s.touches.Wait()
			got, err := s.Get(ctx, info.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got.LastUsedAt
		}
		auth := func() {
			t.Helper()
			if _, err := s.Authenticate(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		first := clk.Now().Truncate(time.Microsecond)
		auth()
		if got := lastUsed(); !got.Equal(first) {
			t.Fatalf("last used %s, want %s", got, first)
		}
		// Within a minute, uses are not written, even after the cache
		// was refreshed or by a new process.
		for range 5 {
			clk.Advance(10 * time.Second)
			auth()
		}
		other := newService(t, e.DB, clk, Options{})
		if _, err := other.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
		other.touches.Wait()
		if got := lastUsed(); !got.Equal(first) {
			t.Fatalf("last used %s after uses within a minute, want %s", got, first)
		}
		clk.Advance(10 * time.Second)
		auth()
		if got, want := lastUsed(), clk.Now().Truncate(time.Microsecond); !got.Equal(want) {
			t.Fatalf("last used %s a minute later, want %s", got, want)
		}
		// Failed attempts are not uses.
		_, secret, _ := Parse(mustToken(t, s))
		clk.Advance(2 * time.Minute)
		if _, err := s.Authenticate(ctx, format(info.ID, secret)); err == nil {
			t.Fatal("wrong secret authenticated")
		}
		if got := lastUsed(); !got.Equal(clk.Now().Add(-2 * time.Minute).Truncate(time.Microsecond)) {
			t.Errorf("a failed attempt moved last used to %s", got)
		}
		// After Close, nothing more is written, and Authenticate works.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		before := lastUsed()
		auth()
		if got := lastUsed(); !got.Equal(before) {
			t.Errorf("use recorded after Close: %s", got)
		}
	})
}

// TestCacheBounded checks that neither real tokens nor made-up ids grow
// the cache past its bounds, and that made-up ids do not evict tokens.
func TestCacheBounded(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		clk := newClock()
		s := newService(t, e.DB, clk, Options{CacheSize: 3})
		var toks []string
		for range 5 {
			toks = append(toks, mustToken(t, s))
		}
		for _, tk := range toks {
			if _, err := s.Authenticate(ctx, tk); err != nil {
				t.Fatal(err)
			}
		}
		s.mu.RLock()
		n := len(s.known)
		s.mu.RUnlock()
		if n != 3 {
			t.Errorf("%d tokens cached, want the bound 3", n)
		}
		cached := map[string]bool{}
		s.mu.RLock()
		for id := range s.known {
			cached[id] = true
		}
		s.mu.RUnlock()

		var secret [SecretBytes]byte
		for i := range unknownCacheSize + 200 {
			bad := format(fmt.Sprintf("%012x", i), secret)
			if _, err := s.Authenticate(ctx, bad); !errors.Is(err, httpapi.ErrUnauthenticated) {
				t.Fatalf("unknown id: %v", err)
			}
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		if len(s.unknown) > unknownCacheSize {
			t.Errorf("%d unknown ids cached, bound %d", len(s.unknown), unknownCacheSize)
		}
		if len(s.known) != 3 {
			t.Errorf("%d tokens cached after the unknown ids, want 3", len(s.known))
		}
		for id := range cached {
			if s.known[id] == nil {
				t.Errorf("unknown ids evicted token %s", id)
			}
		}
	})
}

// TestConcurrent authenticates from many goroutines while the cache
// expires and a token is revoked (run with -race).
func TestConcurrent(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		clk := newClock()
		s := newService(t, e.DB, clk, Options{TouchInterval: time.Second})
		good, _ := mustCreate(t, s, "good", httpapi.ScopeRead, 0)
		doomed, doomedInfo := mustCreate(t, s, "doomed", httpapi.ScopeRead, 0)
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := range 16 {
			wg.Go(func() {
				for i := range 50 {
					if g == 0 && i%10 == 0 {
						clk.Advance(3 * time.Second)
					}
					if _, err := s.Authenticate(ctx, good); err != nil {
						errs <- err
						return
					}
					_, _ = s.Authenticate(ctx, doomed)
				}
			})
		}
		wg.Go(func() {
			if err := s.Revoke(ctx, doomedInfo.ID); err != nil {
				errs <- err
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if _, err := s.Authenticate(ctx, doomed); !errors.Is(err, httpapi.ErrUnauthenticated) {
			t.Errorf("revoked token after the race: %v", err)
		}
	})
}

// TestDatabaseErrorIsNotUnauthenticated checks that a failing database is
// an error of its own, not a 401, and that it is not cached.
func TestDatabaseErrorIsNotUnauthenticated(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := ctxT(t)
		s := newService(t, e.DB, newClock(), Options{})
		tok := mustToken(t, s)
		s.forget(tok[5:17])
		if _, err := e.DB.W.ExecContext(ctx, "ALTER TABLE api_tokens RENAME TO api_tokens_away"); err != nil {
			t.Fatal(err)
		}
		_, err := s.Authenticate(ctx, tok)
		if err == nil || errors.Is(err, httpapi.ErrUnauthenticated) {
			t.Fatalf("with the table gone: %v, want a database error", err)
		}
		if _, err := e.DB.W.ExecContext(ctx, "ALTER TABLE api_tokens_away RENAME TO api_tokens"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatalf("after the table is back: %v", err)
		}
	})
}

func TestParseRoundTrip(t *testing.T) {
	t.Parallel()
	for range 200 {
		id, secret := newID(), newSecret()
		tok := format(id, secret)
		gotID, gotSecret, ok := Parse(tok)
		if !ok || gotID != id || gotSecret != secret || !tokenRE.MatchString(tok) {
			t.Fatalf("round trip of %q: %q %v", tok, gotID, ok)
		}
	}
}

func BenchmarkAuthenticateCached(b *testing.B) {
	e := dbtest.SQLite(b)
	s := NewService(NewStore(e.DB), Options{CacheTTL: time.Hour})
	b.Cleanup(func() { _ = s.Close() })
	tok, _, err := s.Create(context.Background(), "bench", httpapi.ScopeRead, 0)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Authenticate(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
