package idempotency

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/kilnhq/kiln/internal/httpapi"
)

// outcome is what a request with a key must do.
type outcome int

const (
	// reserved: the request holds the key; run it and store its response.
	reserved outcome = iota
	// replay: the request was answered; send the stored response.
	replay
	// busy: the same request is being served; answer 409.
	busy
	// mismatch: the key was used for another request; answer 422.
	mismatch
)

// maxBeginAttempts bounds the retries of begin when the record changes
// between the reservation attempt and the read (released, expired or
// abandoned meanwhile).
const maxBeginAttempts = 3

// begin decides what the request with fingerprint hash does with key:
// it reserves the key when it is free, expired, or held by the same
// request whose lock ran out; otherwise it reads the record to replay it
// or to refuse the request.
func (s *Store) begin(ctx context.Context, principal, key string, hash []byte) (outcome, reservation, record, error) {
	for range maxBeginAttempts {
		now := s.now()
		res, ok, err := s.reserve(ctx, principal, key, hash, now)
		if err != nil {
			return 0, reservation{}, record{}, err
		}
		if ok {
			return reserved, res, record{}, nil
		}
		rec, found, err := s.lookup(ctx, principal, key)
		if err != nil {
			return 0, reservation{}, record{}, err
		}
		switch {
		case !found || !now.Before(rec.expiresAt):
			continue // released or expired since the attempt
		case !bytes.Equal(rec.hash, hash):
			return mismatch, reservation{}, rec, nil
		case rec.state == stateDone:
			return replay, reservation{}, rec, nil
		case now.Before(rec.lockedUntil):
			return busy, reservation{}, rec, nil
		}
		// The holder's lock ran out since the attempt: take it over.
	}
	return busy, reservation{}, record{}, nil
}

// committedLock is how long a request whose work has committed keeps its
// key locked while its response is made and stored. A repeat of the
// request after that takes the key over and returns the committed work
// (the holder died, or is slow; either way the work is not done again).
const committedLock = 2 * time.Second

// errKeyLost is the answer to a request that commits its work after a
// repeat took its key over: the work is rolled back, so that it is done
// once, by the holder.
var errKeyLost = &httpapi.Error{
	Code:    httpapi.CodeConflict,
	Message: fmt.Sprintf("this request ran longer than its %s is held and a repeat of it took the key over, so its work was not done; send the request again with the same key to get the outcome", Header),
}

// holder is the [database.OnceKey] of a request that holds its key.
type holder struct {
	s   *Store
	res reservation
}

// Committed returns the work an earlier attempt of the request committed.
func (h *holder) Committed() ([]byte, bool) { return h.res.work, h.res.work != nil }

// Commit records the request's work in tx.
func (h *holder) Commit(ctx context.Context, tx *sql.Tx, outcome []byte) error {
	return h.s.commitWork(ctx, tx, h.res, outcome)
}
