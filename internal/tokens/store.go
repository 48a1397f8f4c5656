package tokens

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kilnhq/kiln/internal/auth"
	"github.com/kilnhq/kiln/internal/database"
)

// Store keeps tokens in the api_tokens table.
type Store struct {
	db *database.DB
}

// NewStore returns the store of db's tokens.
func NewStore(db *database.DB) *Store { return &Store{db: db} }

// record is a token row with its secret's hash.
type record struct {
	Token
	hash [sha256.Size]byte
}

const tokenColumns = `id, name, scope, created_at, expires_at, revoked_at, last_used_at`

// scanner is what *sql.Row and *sql.Rows offer.
// scanToken reads the columns of tokenColumns, then any extra.
func scanToken(sc database.Scanner, extra ...any) (Token, error) {
	var (
		t     Token
		scope string
	)
	dest := append([]any{&t.ID, &t.Name, &scope,
		database.ScanTime(&t.CreatedAt), database.ScanTime(&t.ExpiresAt),
		database.ScanTime(&t.RevokedAt), database.ScanTime(&t.LastUsedAt)}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return Token{}, err
	}
	s, err := auth.ParseScope(scope)
	if err != nil {
		return Token{}, fmt.Errorf("token %s: %w", t.ID, err)
	}
	t.Scope = s
	return t, nil
}

// insert adds a token. An id that is taken is reported with an error for
// which database.IsUniqueViolation holds.
func (s *Store) insert(ctx context.Context, r record) error {
	_, err := s.db.W.ExecContext(ctx, s.db.Rebind(`INSERT INTO api_tokens
		(id, name, scope, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`),
		r.ID, r.Name, r.Scope.String(), r.hash[:], s.db.Time(r.CreatedAt), s.db.Time(r.ExpiresAt))
	if err != nil {
		return fmt.Errorf("insert token %s: %w", r.ID, err)
	}
	return nil
}

// get reads the token id with its hash, or returns [ErrNotFound].
func (s *Store) get(ctx context.Context, id string) (record, error) {
	row := s.db.R.QueryRowContext(ctx, s.db.Rebind(`SELECT `+tokenColumns+`, secret_hash FROM api_tokens WHERE id = ?`), id)
	var hash []byte
	t, err := scanToken(row, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return record{}, ErrNotFound
	}
	if err != nil {
		return record{}, fmt.Errorf("read token %s: %w", id, err)
	}
	r := record{Token: t}
	if len(hash) != len(r.hash) {
		return record{}, fmt.Errorf("read token %s: secret hash has %d bytes, want %d", id, len(hash), len(r.hash))
	}
	copy(r.hash[:], hash)
	return r, nil
}

// Get returns the token id, or an error wrapping [ErrNotFound].
func (s *Store) Get(ctx context.Context, id string) (Token, error) {
	r, err := s.get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Token{}, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return r.Token, err
}

// List returns every token, newest first.
func (s *Store) List(ctx context.Context) ([]Token, error) {
	ts, err := database.QueryAll(ctx, s.db.R, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY created_at DESC, id`, nil,
		func(sc database.Scanner) (Token, error) { return scanToken(sc) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// Revoke marks the token id revoked at at. Revoking a revoked token
// changes nothing and is not an error; an unknown id is [ErrNotFound].
func (s *Store) Revoke(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`), s.db.Time(at), id)
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	if n > 0 {
		return nil
	}
	var one int
	err = s.db.R.QueryRowContext(ctx, s.db.Rebind(`SELECT 1 FROM api_tokens WHERE id = ?`), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("revoke token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// Touch records that the token id was used at at, unless a later use is
// already recorded.
func (s *Store) Touch(ctx context.Context, id string, at time.Time) error {
	v := s.db.Time(at)
	_, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE api_tokens SET last_used_at = ?
		WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`), v, id, v)
	if err != nil {
		return fmt.Errorf("record use of token %s: %w", id, err)
	}
	return nil
}

// CountLive returns how many tokens work at now: not revoked and not
// expired.
func (s *Store) CountLive(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.db.R.QueryRowContext(ctx, s.db.Rebind(`SELECT count(*) FROM api_tokens
		WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`), s.db.Time(now)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return n, nil
}
