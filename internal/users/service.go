// Package users serves the users of the application: creating, reading,
// listing, updating and deleting them over the HTTP API.
package users

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/database"
)

// Limits on user fields.
const (
	// MaxEmail is the longest email, in characters.
	MaxEmail = 254
	// MaxName is the longest name, in characters.
	MaxName = 200
)

// CreateInput is a new user as a client sent it.
type CreateInput struct {
	Email string
	Name  string
}

// PatchInput changes the fields that are not nil.
type PatchInput struct {
	Email *string
	Name  *string
}

// Options configure a [Service].
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Service applies the rules of users over their table.
type Service struct {
	db    *database.DB
	store *store
	now   func() time.Time
}

// NewService returns the service of the users in db.
func NewService(db *database.DB, o Options) (*Service, error) {
	if db == nil {
		return nil, errors.New("users: NewService needs a database")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{db: db, store: newStore(db), now: o.Now}, nil
}

// timestamp is the service's clock in UTC at the databases' precision
// (microseconds), so a returned user equals the stored one.
func (s *Service) timestamp() time.Time {
	return database.StoredTime(s.now())
}

// validateCreate checks and normalizes in: every bad field is listed in
// one validation error.
func validateCreate(in CreateInput) (CreateInput, error) {
	var v validator
	in.Email = v.email(in.Email)
	in.Name = v.name(in.Name)
	return in, v.Err()
}

// validatePatch checks and normalizes the fields in sets.
func validatePatch(in PatchInput) (PatchInput, error) {
	var v validator
	if in.Email != nil {
		e := v.email(*in.Email)
		in.Email = &e
	}
	if in.Name != nil {
		n := v.name(*in.Name)
		in.Name = &n
	}
	return in, v.Err()
}

// Create validates in and stores a new user. Errors: a validation error
// naming every bad field, [ErrEmailTaken] (wrapped).
func (s *Service) Create(ctx context.Context, in CreateInput) (User, error) {
	in, err := validateCreate(in)
	if err != nil {
		return User{}, err
	}
	now := s.timestamp()
	u, err := database.Once(ctx, s.db, func(tx *sql.Tx) (User, error) {
		u := User{Email: in.Email, Name: in.Name, CreatedAt: now, UpdatedAt: now}
		err := s.store.insert(ctx, tx, &u)
		return u, err
	})
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// Get returns user id; a missing user is [ErrNotFound] (wrapped).
func (s *Service) Get(ctx context.Context, id int64) (User, error) {
	return s.store.get(ctx, id)
}

// List returns a page of users, newest first.
func (s *Service) List(ctx context.Context, p ListParams) ([]User, error) {
	return s.store.list(ctx, p)
}

// Update changes the fields in sets and returns the user. Errors: a
// validation error, [ErrNotFound], [ErrEmailTaken] (wrapped). A patch
// that sets nothing returns the user unchanged.
func (s *Service) Update(ctx context.Context, id int64, in PatchInput) (User, error) {
	in, err := validatePatch(in)
	if err != nil {
		return User{}, err
	}
	if in.Email == nil && in.Name == nil {
		return s.store.get(ctx, id)
	}
	return s.store.update(ctx, id, in.Email, in.Name, s.timestamp())
}

// Delete removes user id. Errors: [ErrNotFound], [ErrHasOrders]
// (wrapped).
func (s *Service) Delete(ctx context.Context, id int64) error {
	return s.store.delete(ctx, id)
}

// validator collects field errors.
type validator struct{ apperr.Fields }

// email returns s trimmed and lower-cased, recording what is wrong with
// it, if anything.
func (v *validator) email(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "":
		v.Add("email", "is required")
	case utf8.RuneCountInString(s) > MaxEmail:
		v.Add("email", "must be at most %d characters", MaxEmail)
	case !plausibleEmail(s):
		v.Add("email", "must be a plain email address such as ada@example.com")
	}
	return s
}

// plausibleEmail accepts a bare address (no display name, no angle
// brackets) with one @ and a dot inside the domain.
func plausibleEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || strings.Count(s, "@") != 1 {
		return false
	}
	domain := s[strings.IndexByte(s, '@')+1:]
	dot := strings.IndexByte(domain, '.')
	return dot > 0 && dot < len(domain)-1
}

// name returns s trimmed, recording what is wrong with it, if anything.
func (v *validator) name(s string) string {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		v.Add("name", "is required")
	case utf8.RuneCountInString(s) > MaxName:
		v.Add("name", "must be at most %d characters", MaxName)
	case strings.ContainsFunc(s, unicode.IsControl):
		v.Add("name", "must not contain control characters")
	}
	return s
}
