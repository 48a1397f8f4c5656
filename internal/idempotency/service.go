package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"net/http"
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

// fingerprint identifies a request for a key: SHA-256 over its method,
// the route pattern that matched, its path and query, and its body, each
// prefixed with its length so that no two requests share an encoding.
func fingerprint(r *http.Request, body []byte) []byte {
	h := sha256.New()
	var n [8]byte
	for _, part := range [][]byte{[]byte(r.Method), []byte(r.Pattern), []byte(r.URL.Path), []byte(r.URL.RawQuery), body} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}
