package idempotency

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kilnhq/kiln/internal/database"
)

// The states of a record.
const (
	stateRunning = "running"
	stateDone    = "done"
)

// record is one row of idempotency_keys.
type record struct {
	hash        []byte
	state       string
	status      int
	headers     http.Header
	body        []byte
	lockedUntil time.Time
	expiresAt   time.Time
}

// reservation names the record a request holds. createdAt tells this
// holder from a later one that took the key over, so that a request whose
// lock expired cannot overwrite or delete its successor's record. work is
// the outcome an earlier holder of the same request committed (see
// [database.Once]); nil when none did.
type reservation struct {
	principal string
	key       string
	createdAt time.Time
	work      []byte
}

// reserveQuery inserts a running record, or takes over one that has
// expired or whose holder's lock ran out while serving the same request.
// A takeover keeps the work an earlier holder of the same request
// committed, and returns it; an expired record starts anew. It returns no
// row when the key is held or done.
const reserveQuery = `INSERT INTO idempotency_keys
	(principal, key, request_hash, state, status, headers, body, work, created_at, locked_until, expires_at)
VALUES (?, ?, ?, 'running', 0, '{}', NULL, NULL, ?, ?, ?)
ON CONFLICT (principal, key) DO UPDATE SET
	request_hash = excluded.request_hash, state = 'running', status = 0, headers = '{}', body = NULL,
	work = CASE WHEN idempotency_keys.expires_at <= ? THEN NULL ELSE idempotency_keys.work END,
	created_at = excluded.created_at, locked_until = excluded.locked_until, expires_at = excluded.expires_at
WHERE idempotency_keys.expires_at <= ?
	OR (idempotency_keys.state = 'running' AND idempotency_keys.locked_until <= ?
		AND idempotency_keys.request_hash = excluded.request_hash)
RETURNING work`

// reserve tries to take the key for a request with fingerprint hash at
// now; ok is false when another record holds it.
func (s *Store) reserve(ctx context.Context, principal, key string, hash []byte, now time.Time) (res reservation, ok bool, err error) {
	lock := now.Add(s.opts.LockTimeout)
	exp := now.Add(s.opts.TTL)
	if exp.Before(lock) {
		exp = lock
	}
	var work []byte
	t := s.db.Time(now)
	err = s.db.W.QueryRowContext(ctx, s.db.Rebind(reserveQuery),
		principal, key, hash, t, s.db.Time(lock), s.db.Time(exp), t, t, t).Scan(&work)
	if errors.Is(err, sql.ErrNoRows) {
		return reservation{}, false, nil
	}
	if err != nil {
		return reservation{}, false, fmt.Errorf("reserve idempotency key: %w", err)
	}
	return reservation{principal: principal, key: key, createdAt: now, work: work}, true, nil
}

// commitWork records outcome, the result of the work of the request
// holding res, in tx, the transaction that does the work, and keeps the
// key locked for [committedLock] more while the response is made. It
// fails with a conflict when the request no longer holds the key, or
// already committed its work.
func (s *Store) commitWork(ctx context.Context, tx *sql.Tx, res reservation, outcome []byte) error {
	r, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE idempotency_keys SET work = ?, locked_until = ?
WHERE principal = ? AND key = ? AND created_at = ? AND state = 'running' AND work IS NULL`),
		outcome, s.db.Time(s.now().Add(committedLock)), res.principal, res.key, s.db.Time(res.createdAt))
	if err != nil {
		return fmt.Errorf("record the outcome for the idempotency key: %w", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return fmt.Errorf("record the outcome for the idempotency key: %w", err)
	}
	if n == 0 {
		return errKeyLost
	}
	return nil
}

// lookup reads the record of (principal, key); found is false when there
// is none.
func (s *Store) lookup(ctx context.Context, principal, key string) (rec record, found bool, err error) {
	var headers string
	err = s.db.R.QueryRowContext(ctx, s.db.Rebind(`SELECT request_hash, state, status, headers, body, locked_until, expires_at
FROM idempotency_keys WHERE principal = ? AND key = ?`), principal, key).Scan(
		&rec.hash, &rec.state, &rec.status, &headers, &rec.body,
		database.ScanTime(&rec.lockedUntil), database.ScanTime(&rec.expiresAt))
	if errors.Is(err, sql.ErrNoRows) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("read idempotency key: %w", err)
	}
	if err := json.Unmarshal([]byte(headers), &rec.headers); err != nil {
		return record{}, false, fmt.Errorf("read idempotency key: decode stored headers: %w", err)
	}
	return rec, true, nil
}

// complete stores the response of the request holding res; stored is
// false when the request no longer holds the key (its lock ran out and a
// repeat took the key over).
func (s *Store) complete(ctx context.Context, res reservation, status int, header http.Header, body []byte, now time.Time) (stored bool, err error) {
	h, err := json.Marshal(header)
	if err != nil {
		return false, fmt.Errorf("store idempotent response: encode headers: %w", err)
	}
	if body == nil {
		body = []byte{}
	}
	r, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE idempotency_keys
SET state = 'done', status = ?, headers = ?, body = ?, expires_at = ?
WHERE principal = ? AND key = ? AND created_at = ? AND state = 'running'`),
		status, string(h), body, s.db.Time(now.Add(s.opts.TTL)), res.principal, res.key, s.db.Time(res.createdAt))
	if err != nil {
		return false, fmt.Errorf("store idempotent response: %w", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store idempotent response: %w", err)
	}
	return n == 1, nil
}

// release deletes the running record res holds, so that the client may
// retry with the same key. A record whose work committed is kept: a retry
// must return that work, not do it again.
func (s *Store) release(ctx context.Context, res reservation) error {
	_, err := s.db.W.ExecContext(ctx, s.db.Rebind(`DELETE FROM idempotency_keys
WHERE principal = ? AND key = ? AND created_at = ? AND state = 'running' AND work IS NULL`),
		res.principal, res.key, s.db.Time(res.createdAt))
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// Prune deletes the records that have expired, [Options.PruneBatch] at a
// time, and returns how many it deleted. It stops early, returning the
// count so far and ctx's error, when ctx is done.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	q := s.db.Rebind(`DELETE FROM idempotency_keys WHERE (principal, key) IN (
	SELECT principal, key FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)`)
	now := s.db.Time(s.now())
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune idempotency keys: %w", err)
		}
		r, err := s.db.W.ExecContext(ctx, q, now, s.opts.PruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune idempotency keys: %w", err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune idempotency keys: %w", err)
		}
		total += n
		if n < int64(s.opts.PruneBatch) {
			return total, nil
		}
	}
}
