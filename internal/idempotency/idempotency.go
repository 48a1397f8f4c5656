// Package idempotency makes POST requests safe to retry: a client that
// sends an Idempotency-Key header gets, for a repeat of the same request
// with the same key, the response of the first one instead of a second
// execution (the IETF httpapi draft "The Idempotency-Key HTTP Header
// Field").
//
// Records live in the application database (table idempotency_keys), one
// per caller and key, so a repeat is answered the same by every process
// serving the API. A record is reserved atomically when the first request
// arrives, holds its response once that request is answered, and expires
// after [Options.TTL].
package idempotency

import (
	"context"
	"log/slog"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/defaults"
)

// Header is the request header field that carries the key.
const Header = "Idempotency-Key"

// ReplayedHeader is set to "true" on a response replayed from a record.
const ReplayedHeader = "Idempotent-Replayed"

// The defaults of [Options].
const (
	DefaultTTL           = 24 * time.Hour
	DefaultLockTimeout   = time.Minute
	DefaultMaxBody       = 1 << 20
	DefaultPruneInterval = 10 * time.Minute
	DefaultPruneBatch    = 1000
)

// Options configure a [Store]; zero fields take the defaults.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// TTL is how long a completed response is kept and replayed
	// (default [DefaultTTL]).
	TTL time.Duration
	// LockTimeout is how long a request in progress holds its key; after
	// it, a repeat takes the key over, on the assumption that the process
	// serving the first request died (default [DefaultLockTimeout]). It
	// should exceed the longest time a POST handler runs.
	LockTimeout time.Duration
	// MaxBody is the largest response body stored, in bytes (default
	// [DefaultMaxBody]); a larger response is sent but not stored, and
	// its key is released.
	MaxBody int
	// PruneInterval is how often [Store.Run] deletes expired records
	// (default [DefaultPruneInterval]).
	PruneInterval time.Duration
	// PruneBatch is how many records one DELETE of [Store.Prune] removes
	// at most (default [DefaultPruneBatch]).
	PruneBatch int
	// SpoolDir is where the body of a keyed request larger than
	// [bufferLimit] (an upload) is kept while the request is served
	// (default: os.TempDir(), which honours TMPDIR).
	SpoolDir string
	// Logger reports failures of [Store.Run] (default: discard).
	Logger *slog.Logger
}

// Store keeps idempotency records in the application database and serves
// the middleware that uses them. It is safe for concurrent use.
type Store struct {
	db   *database.DB
	opts Options
}

// NewStore returns a store on db with opts (zero fields take defaults).
func NewStore(db *database.DB, opts Options) *Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	defaults.Positive(&opts.TTL, DefaultTTL)
	defaults.Positive(&opts.LockTimeout, DefaultLockTimeout)
	defaults.Positive(&opts.MaxBody, DefaultMaxBody)
	defaults.Positive(&opts.PruneInterval, DefaultPruneInterval)
	defaults.Positive(&opts.PruneBatch, DefaultPruneBatch)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{db: db, opts: opts}
}

// now returns the clock's time at the precision both databases store
// (microseconds), so that a time read back compares equal to the one
// written.
func (s *Store) now() time.Time {
	return database.StoredTime(s.opts.Now())
}

// Run prunes expired records once, then every [Options.PruneInterval],
// until ctx is done. Failures are logged and retried at the next tick.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.PruneInterval)
	defer t.Stop()
	for {
		n, err := s.Prune(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.opts.Logger.Warn("prune idempotency keys", "err", err)
		case n > 0:
			s.opts.Logger.Debug("pruned idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
