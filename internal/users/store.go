package users

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/database"
)

// User is a stored user. Email is stored trimmed and lower-cased, so it
// is unique regardless of case.
type User struct {
	ID        int64
	Email     string
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Errors of the store, returned wrapped; test for them with errors.Is.
var (
	// ErrNotFound: no user has the id.
	ErrNotFound = apperr.New(apperr.CodeNotFound, "user not found")
	// ErrEmailTaken: another user already has the email.
	ErrEmailTaken = &apperr.Error{Code: apperr.CodeConflict, Message: "another user already has this email",
		Fields: []apperr.FieldError{{Field: "email", Message: "is already taken"}}}
	// ErrHasOrders: the user cannot be deleted while orders refer to it.
	ErrHasOrders = apperr.New(apperr.CodeConflict, "user has orders")
)

// notFound is the error for user id, which does not exist.
func notFound(id int64) error { return apperr.Wrapf(ErrNotFound, "user %d does not exist", id) }

const columns = "id, email, name, created_at, updated_at"

// store reads and writes the users table.
type store struct {
	db *database.DB
	// Fixed queries, rebound for the dialect once.
	qGet, qInsert, qUpdate, qDelete string
}

// newStore returns a store on db.
func newStore(db *database.DB) *store {
	return &store{
		db:      db,
		qGet:    db.Rebind("SELECT " + columns + " FROM users WHERE id = ?"),
		qInsert: db.Rebind("INSERT INTO users (email, name, created_at, updated_at) VALUES (?, ?, ?, ?) RETURNING id"),
		qUpdate: db.Rebind("UPDATE users SET email = coalesce(?, email), name = coalesce(?, name), updated_at = ? WHERE id = ? RETURNING " + columns),
		qDelete: db.Rebind("DELETE FROM users WHERE id = ?"),
	}
}

func scanUser(row database.Scanner) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Email, &u.Name, database.ScanTime(&u.CreatedAt), database.ScanTime(&u.UpdatedAt))
	return u, err
}

// get returns the user with id, or an error wrapping [ErrNotFound]. It is
// one primary-key SELECT on the read handle.
func (s *store) get(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.db.R.QueryRowContext(ctx, s.qGet, id))
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return u, notFound(id)
		}
		return u, fmt.Errorf("get user %d: %w", id, err)
	}
	return u, nil
}

// insert stores u (its email, name and times) and sets u.ID. A taken
// email is an error wrapping [ErrEmailTaken].
func (s *store) insert(ctx context.Context, q database.Querier, u *User) error {
	err := q.QueryRowContext(ctx, s.qInsert, u.Email, u.Name, s.db.Time(u.CreatedAt), s.db.Time(u.UpdatedAt)).Scan(&u.ID)
	if err != nil {
		if database.IsUniqueViolation(err) {
			return fmt.Errorf("insert user: %w", ErrEmailTaken)
		}
		return fmt.Errorf("insert user: %w", err)
	}
	return nil
}

// update sets the email and name of user id to those that are not nil,
// and its updated_at to now, and returns the user as stored. A missing
// user is [ErrNotFound], a taken email [ErrEmailTaken] (both wrapped).
func (s *store) update(ctx context.Context, id int64, email, name *string, now time.Time) (User, error) {
	u, err := scanUser(s.db.W.QueryRowContext(ctx, s.qUpdate, nullable(email), nullable(name), s.db.Time(now), id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return u, notFound(id)
	case database.IsUniqueViolation(err):
		return u, fmt.Errorf("update user %d: %w", id, ErrEmailTaken)
	case err != nil:
		return u, fmt.Errorf("update user %d: %w", id, err)
	}
	return u, nil
}

func nullable(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// delete removes user id. A missing user is [ErrNotFound]; a user that
// orders still refer to is [ErrHasOrders] (both wrapped).
func (s *store) delete(ctx context.Context, id int64) error {
	n, err := database.Exec(ctx, s.db.W, s.qDelete, id)
	switch {
	case database.IsForeignKeyViolation(err):
		return apperr.Wrapf(ErrHasOrders, "user %d has orders and cannot be deleted; delete the orders first", id)
	case err != nil:
		return fmt.Errorf("delete user %d: %w", id, err)
	case n == 0:
		return notFound(id)
	}
	return nil
}

// ListParams selects a page of users, newest first.
type ListParams struct {
	// Email, if set, matches the stored (lower-case) email exactly.
	Email string
	// Search, if set, matches users whose name or email contains it,
	// ignoring case. Emails are compared in lower case; names are
	// compared as written and in the database's lower case, which folds
	// only ASCII letters on SQLite (and under PostgreSQL's C locale).
	Search string
	// AfterID, if positive, lists users with a smaller id (the cursor).
	AfterID int64
	// Limit is the page size; it must be positive.
	Limit int
}

// list returns the users p selects, newest (highest id) first.
func (s *store) list(ctx context.Context, p ListParams) ([]User, error) {
	q := database.NewSelect("SELECT " + columns + " FROM users")
	if p.Email != "" {
		q.Where("email = ?", p.Email)
	}
	if p.Search != "" {
		low := "%" + escapeLike(strings.ToLower(p.Search)) + "%"
		raw := "%" + escapeLike(p.Search) + "%"
		q.Where(`(lower(name) LIKE ? ESCAPE '\' OR name LIKE ? ESCAPE '\' OR email LIKE ? ESCAPE '\')`, low, raw, low)
	}
	query, args := q.Newest(p.AfterID, p.Limit)
	us, err := database.QueryAll(ctx, s.db.R, s.db.Rebind(query), args, scanUser)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return us, nil
}

// escapeLike escapes the LIKE wildcards of s with backslashes.
func escapeLike(s string) string {
	if !strings.ContainsAny(s, `\%_`) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == '\\' || r == '%' || r == '_' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
