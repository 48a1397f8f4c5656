package tokens

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnhq/kiln/internal/auth"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/defaults"
)

// Defaults of [Options].
const (
	// DefaultCacheTTL is how long a token read from the database is
	// trusted, and so how long a revocation by another process may take
	// to be noticed.
	DefaultCacheTTL = 5 * time.Second
	// DefaultCacheSize bounds how many tokens are cached.
	DefaultCacheSize = 10_000
	// DefaultTouchInterval is how often, at most, a token's last use is
	// written.
	DefaultTouchInterval = time.Minute
)

// unknownCacheSize bounds the cache of ids that do not exist.
const unknownCacheSize = 1024

// ioTimeout bounds the database calls made off a request's context: a
// token lookup shared by concurrent requests, and last-use writes.
const ioTimeout = 10 * time.Second

// Options configures a [Service].
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// CacheTTL is how long a token read from the database is trusted
	// (default [DefaultCacheTTL]); negative disables the cache, so that
	// every request reads the database.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached tokens (default
	// [DefaultCacheSize]).
	CacheSize int
	// TouchInterval is the least time between two writes of a token's
	// last use (default [DefaultTouchInterval]).
	TouchInterval time.Duration
	// Logger receives failures to record a token's last use (default:
	// discard).
	Logger *slog.Logger
}

// Service creates, lists, revokes and verifies tokens; its Authenticate
// is what the HTTP API checks bearer tokens with. It is safe for
// concurrent use.
type Service struct {
	store     *Store
	now       func() time.Time
	ttl       time.Duration
	size      int
	touchEach time.Duration
	log       *slog.Logger

	mu       sync.RWMutex
	known    map[string]*entry    // tokens that exist (live or not)
	unknown  map[string]time.Time // ids that did not exist, by when that was read
	inflight map[string]*lookup   // database reads in progress, by id
	swept    time.Time            // last sweep of stale entries

	touchMu sync.Mutex
	closed  bool
	touches sync.WaitGroup
}

// entry is a cached token.
type entry struct {
	hash      [sha256.Size]byte
	principal auth.Principal
	expiresAt time.Time
	revoked   bool
	read      time.Time // when the database read that filled it began
	// lastUsed is the last use recorded or being recorded, in Unix
	// nanoseconds.
	lastUsed atomic.Int64
}

// lookup is a database read shared by the requests that need it.
type lookup struct {
	done chan struct{}
	e    *entry // nil when the id does not exist
	err  error
}

// NewService returns a service on s.
func NewService(s *Store, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.CacheTTL = cmp.Or(opts.CacheTTL, DefaultCacheTTL)
	defaults.Positive(&opts.CacheSize, DefaultCacheSize)
	defaults.Positive(&opts.TouchInterval, DefaultTouchInterval)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{
		store: s, now: opts.Now, ttl: opts.CacheTTL, size: opts.CacheSize, touchEach: opts.TouchInterval, log: opts.Logger,
		known: map[string]*entry{}, unknown: map[string]time.Time{}, inflight: map[string]*lookup{},
	}
}

// stamp returns the clock's time in UTC at the database's precision.
func (s *Service) stamp() time.Time { return database.StoredTime(s.now()) }

// Create makes a token named name with scope that expires after ttl (zero:
// never). It returns the token, which is not stored and cannot be shown
// again, and its description. Bad parameters are errors wrapping
// [ErrInvalid].
func (s *Service) Create(ctx context.Context, name string, scope auth.Scope, ttl time.Duration) (string, Token, error) {
	if err := Validate(name, scope, ttl); err != nil {
		return "", Token{}, err
	}
	now := s.stamp()
	r := record{Token: Token{Name: name, Scope: scope, CreatedAt: now}}
	if ttl > 0 {
		r.ExpiresAt = now.Add(ttl).Truncate(time.Microsecond)
	}
	secret := newSecret()
	r.hash = hashSecret(secret)
	// 48 random bits make a clash rare; try again rather than fail.
	var err error
	for range 5 {
		r.ID = newID()
		if err = s.store.insert(ctx, r); !database.IsUniqueViolation(err) {
			break
		}
	}
	if err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	s.forget(r.ID)
	return format(r.ID, secret), r.Token, nil
}

// List returns every token, newest first.
func (s *Service) List(ctx context.Context) ([]Token, error) { return s.store.List(ctx) }

// Get returns the token id, or an error wrapping [ErrNotFound].
func (s *Service) Get(ctx context.Context, id string) (Token, error) {
	if !ValidID(id) {
		return Token{}, fmt.Errorf("token %q: %w", id, ErrNotFound)
	}
	return s.store.Get(ctx, id)
}

// Revoke revokes the token id at once in this process and within the
// cache TTL in every other. Revoking a revoked token is not an error; an
// unknown id is one wrapping [ErrNotFound].
func (s *Service) Revoke(ctx context.Context, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("token %q: %w", id, ErrNotFound)
	}
	if err := s.store.Revoke(ctx, id, s.stamp()); err != nil {
		return err
	}
	s.forget(id)
	return nil
}

// Count returns how many tokens work now: not revoked and not expired.
func (s *Service) Count(ctx context.Context) (int, error) {
	return s.store.CountLive(ctx, s.stamp())
}

// Authenticate returns the principal of a live token. A malformed,
// unknown, wrong, revoked or expired token is an error wrapping
// [auth.ErrUnauthenticated]; a database failure is returned as such.
// No error message contains the secret.
func (s *Service) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	id, secret, ok := Parse(token)
	if !ok {
		return auth.Principal{}, fmt.Errorf("malformed token: %w", auth.ErrUnauthenticated)
	}
	now := s.now()
	e, err := s.entry(ctx, id, now)
	if err != nil {
		return auth.Principal{}, err
	}
	sum := hashSecret(secret)
	switch {
	case e == nil:
		return auth.Principal{}, fmt.Errorf("token %s does not exist: %w", id, auth.ErrUnauthenticated)
	case subtle.ConstantTimeCompare(sum[:], e.hash[:]) != 1:
		return auth.Principal{}, fmt.Errorf("token %s: wrong secret: %w", id, auth.ErrUnauthenticated)
	case e.revoked:
		return auth.Principal{}, fmt.Errorf("token %s is revoked: %w", id, auth.ErrUnauthenticated)
	case !e.expiresAt.IsZero() && !now.Before(e.expiresAt):
		return auth.Principal{}, fmt.Errorf("token %s expired at %s: %w", id, e.expiresAt.Format(time.RFC3339), auth.ErrUnauthenticated)
	}
	s.used(id, e, now)
	return e.principal, nil
}

// fresh reports whether something read at read may still be trusted at
// now. A clock that went back trusts nothing.
func (s *Service) fresh(read, now time.Time) bool {
	d := now.Sub(read)
	return d >= 0 && d < s.ttl
}

// entry returns the token id from the cache or the database; nil means
// it does not exist. Concurrent misses for one id share one read.
func (s *Service) entry(ctx context.Context, id string, now time.Time) (*entry, error) {
	s.mu.RLock()
	e, ok := s.known[id]
	if ok && s.fresh(e.read, now) {
		s.mu.RUnlock()
		return e, nil
	}
	if at, ok := s.unknown[id]; ok && s.fresh(at, now) {
		s.mu.RUnlock()
		return nil, nil
	}
	s.mu.RUnlock()

	s.mu.Lock()
	// A read that finished since the check above filled the cache.
	if e, ok := s.known[id]; ok && s.fresh(e.read, now) {
		s.mu.Unlock()
		return e, nil
	}
	l, ok := s.inflight[id]
	if !ok {
		l = &lookup{done: make(chan struct{})}
		s.inflight[id] = l
		// The read outlives the request that started it, so that the
		// others waiting for it do not fail when that one goes away.
		go s.load(context.WithoutCancel(ctx), id, l)
	}
	s.mu.Unlock()
	select {
	case <-l.done:
		return l.e, l.err
	case <-ctx.Done():
		return nil, fmt.Errorf("look up token %s: %w", id, ctx.Err())
	}
}

// load reads the token id for l, caches the result and wakes l's waiters.
func (s *Service) load(ctx context.Context, id string, l *lookup) {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	read := s.now()
	r, err := s.store.get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	var e *entry
	if err == nil && r.ID != "" {
		e = &entry{
			hash:      r.hash,
			principal: auth.Principal{TokenID: r.ID, Name: r.Name, Scope: r.Scope},
			expiresAt: r.ExpiresAt,
			revoked:   r.Revoked(),
			read:      read,
		}
		if !r.LastUsedAt.IsZero() {
			e.lastUsed.Store(r.LastUsedAt.UnixNano())
		}
	}
	s.mu.Lock()
	if s.inflight[id] == l {
		delete(s.inflight, id)
		if err == nil && s.ttl > 0 {
			s.remember(id, e, read)
		}
	}
	s.mu.Unlock()
	l.e, l.err = e, err
	close(l.done)
}

// remember caches what load read about id (e nil: it does not exist).
// Both caches are bounded: stale entries go first, then arbitrary ones.
// s.mu is held.
func (s *Service) remember(id string, e *entry, read time.Time) {
	if e == nil {
		delete(s.known, id)
		if _, ok := s.unknown[id]; !ok && len(s.unknown) >= unknownCacheSize {
			s.sweep(read)
			if len(s.unknown) >= unknownCacheSize {
				evictOne(s.unknown)
			}
		}
		s.unknown[id] = read
		return
	}
	delete(s.unknown, id)
	if old, ok := s.known[id]; ok {
		// A use this process recorded (or is recording) may not be in
		// the database yet.
		if u := old.lastUsed.Load(); u > e.lastUsed.Load() {
			e.lastUsed.Store(u)
		}
	} else if len(s.known) >= s.size {
		s.sweep(read)
		if len(s.known) >= s.size {
			evictOne(s.known)
		}
	}
	s.known[id] = e
}

// sweep drops stale entries, at most once per TTL. s.mu is held.
func (s *Service) sweep(now time.Time) {
	if s.fresh(s.swept, now) {
		return
	}
	s.swept = now
	for id, e := range s.known {
		if !s.fresh(e.read, now) {
			delete(s.known, id)
		}
	}
	for id, at := range s.unknown {
		if !s.fresh(at, now) {
			delete(s.unknown, id)
		}
	}
}

// evictOne removes an arbitrary entry of m.
func evictOne[V any](m map[string]V) {
	for k := range m {
		delete(m, k)
		return
	}
}

// forget drops what the cache holds about id and any read in flight, so
// the next request reads the database.
func (s *Service) forget(id string) {
	s.mu.Lock()
	delete(s.known, id)
	delete(s.unknown, id)
	// A read that began before the change must not cache its result.
	delete(s.inflight, id)
	s.mu.Unlock()
}

// used records a use of the token id at now if none was recorded in the
// last TouchInterval. The write happens in the background.
func (s *Service) used(id string, e *entry, now time.Time) {
	last := e.lastUsed.Load()
	if now.UnixNano()-last < int64(s.touchEach) || !e.lastUsed.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	s.touchMu.Lock()
	defer s.touchMu.Unlock()
	if s.closed {
		return
	}
	s.touches.Add(1)
	go func() {
		defer s.touches.Done()
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		if err := s.store.Touch(ctx, id, database.StoredTime(now)); err != nil {
			s.log.Warn("could not record a token's last use", "token", id, "err", err)
		}
	}()
}

// Close waits for the last-use writes in progress and stops starting new
// ones; Authenticate and the other methods keep working. Call it before
// closing the database.
func (s *Service) Close() error {
	s.touchMu.Lock()
	s.closed = true
	s.touchMu.Unlock()
	s.touches.Wait()
	return nil
}
