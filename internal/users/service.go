// Package users serves the users of the application: creating, reading,
// listing, updating and deleting them over the HTTP API.
package users

import (
	"context"
	"database/sql"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kilnhq/kiln/internal/database"
)

// Limits on user fields.
const (
	// MaxEmail is the longest email, in characters.
	MaxEmail = 254
	// MaxName is the longest name, in characters.
	MaxName = 200
)

// FieldError names one unacceptable field and says what is wrong with it.
type FieldError struct {
	Field   string
	Message string
}

// ValidationError lists every unacceptable field of one request.
type ValidationError struct {
	Fields []FieldError
}

// Error lists the bad fields and what is wrong with each.
func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		msgs[i] = f.Field + ": " + f.Message
	}
	return "invalid user: " + strings.Join(msgs, "; ")
}

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

// Service applies the rules of users over a [Store].
type Service struct {
	store *Store
	now   func() time.Time
}

// NewService returns a service on s; now is its clock (nil means
// time.Now).
func NewService(s *Store, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: s, now: now}
}

// timestamp is the service's clock in UTC at the databases' precision
// (microseconds), so a returned user equals the stored one.
func (s *Service) timestamp() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// ValidateCreate checks and normalizes in: every bad field is listed in
// one *[ValidationError].
func ValidateCreate(in CreateInput) (CreateInput, error) {
	var v validator
	in.Email = v.email(in.Email)
	in.Name = v.name(in.Name)
	return in, v.err()
}

// ValidatePatch checks and normalizes the fields in sets.
func ValidatePatch(in PatchInput) (PatchInput, error) {
	var v validator
	if in.Email != nil {
		e := v.email(*in.Email)
		in.Email = &e
	}
	if in.Name != nil {
		n := v.name(*in.Name)
		in.Name = &n
	}
	return in, v.err()
}

// Create validates in and stores a new user. Errors: *[ValidationError],
// [ErrEmailTaken] (wrapped).
func (s *Service) Create(ctx context.Context, in CreateInput) (User, error) {
	in, err := ValidateCreate(in)
	if err != nil {
		return User{}, err
	}
	now := s.timestamp()
	u, err := database.Once(ctx, s.store.db, func(tx *sql.Tx) (User, error) {
		u := User{Email: in.Email, Name: in.Name, CreatedAt: now, UpdatedAt: now}
		err := s.store.Insert(ctx, tx, &u)
		return u, err
	})
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// Get returns user id; a missing user is [ErrNotFound] (wrapped).
func (s *Service) Get(ctx context.Context, id int64) (User, error) {
	return s.store.Get(ctx, id)
}

// List returns a page of users, newest first.
func (s *Service) List(ctx context.Context, p ListParams) ([]User, error) {
	return s.store.List(ctx, p)
}

// Update changes the fields in sets and returns the user. Errors:
// *[ValidationError], [ErrNotFound], [ErrEmailTaken] (wrapped). A patch
// that sets nothing returns the user unchanged.
func (s *Service) Update(ctx context.Context, id int64, in PatchInput) (User, error) {
	in, err := ValidatePatch(in)
	if err != nil {
		return User{}, err
	}
	if in.Email == nil && in.Name == nil {
		return s.store.Get(ctx, id)
	}
	return s.store.Update(ctx, id, in.Email, in.Name, s.timestamp())
}

// Delete removes user id. Errors: [ErrNotFound], [ErrHasOrders]
// (wrapped).
func (s *Service) Delete(ctx context.Context, id int64) error {
	return s.store.Delete(ctx, id)
}

// validator collects field errors.
type validator struct {
	fields []FieldError
}

func (v *validator) bad(field, msg string) {
	v.fields = append(v.fields, FieldError{field, msg})
}

func (v *validator) err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return &ValidationError{Fields: v.fields}
}

// email returns s trimmed and lower-cased, recording what is wrong with
// it, if anything.
func (v *validator) email(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "":
		v.bad("email", "is required")
	case utf8.RuneCountInString(s) > MaxEmail:
		v.bad("email", fmt.Sprintf("must be at most %d characters", MaxEmail))
	case !plausibleEmail(s):
		v.bad("email", "must be a plain email address such as ada@example.com")
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
		v.bad("name", "is required")
	case utf8.RuneCountInString(s) > MaxName:
		v.bad("name", fmt.Sprintf("must be at most %d characters", MaxName))
	case strings.ContainsFunc(s, unicode.IsControl):
		v.bad("name", "must not contain control characters")
	}
	return s
}
