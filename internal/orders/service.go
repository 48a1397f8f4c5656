// Package orders serves the orders of users over the HTTP API. Creating
// an order enqueues its confirm job (kind [KindConfirm]) in the same
// database transaction, so either both exist or neither does.
package orders

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/enqueue"
)

// Limits on order fields.
const (
	// MaxAmountCents is the largest amount, in minor units.
	MaxAmountCents = 1_000_000_000_000
	// MaxNote is the longest note, in characters.
	MaxNote = 1000
)

// Jobs is what orders need of the job engine: inserting the confirm job
// in the order's transaction. *queue.Client satisfies it.
type Jobs = enqueue.Inserter

// CreateInput is a new order as a client sent it; nil means absent.
type CreateInput struct {
	UserID      *int64
	AmountCents *int64
	Currency    string
	Note        string
}

// PatchInput changes the fields that are not nil. Status may only become
// "cancelled".
type PatchInput struct {
	Note   *string
	Status *string
}

// Created is a new order and the id of its confirm job.
type Created struct {
	Order        Order
	ConfirmJobID int64
}

// Options configure a [Service].
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Service applies the rules of orders over their table.
type Service struct {
	db    *database.DB
	store *store
	jobs  Jobs
	now   func() time.Time
}

// NewService returns the service of the orders in db, which enqueues
// their confirm jobs with jobs in the same transactions.
func NewService(db *database.DB, jobs Jobs, o Options) (*Service, error) {
	if db == nil || jobs == nil {
		return nil, errors.New("orders: NewService needs a database and a job engine")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{db: db, store: newStore(db), jobs: jobs, now: o.Now}, nil
}

// timestamp is the clock in UTC at the databases' precision.
func (s *Service) timestamp() time.Time {
	return database.StoredTime(s.now())
}

// validateCreate checks in and returns the order it describes (without
// id, status or times); every bad field is listed in one validation
// error.
func validateCreate(in CreateInput) (Order, error) {
	var v validator
	var o Order
	switch {
	case in.UserID == nil:
		v.Add("user_id", "is required")
	case *in.UserID < 1:
		v.Add("user_id", "must be a positive integer")
	default:
		o.UserID = *in.UserID
	}
	switch {
	case in.AmountCents == nil:
		v.Add("amount_cents", "is required")
	case *in.AmountCents < 0 || *in.AmountCents > MaxAmountCents:
		v.Add("amount_cents", "must be an integer from 0 to %d", int64(MaxAmountCents))
	default:
		o.AmountCents = *in.AmountCents
	}
	switch {
	case in.Currency == "":
		v.Add("currency", "is required")
	case !isCurrency(in.Currency):
		v.Add("currency", "must be three upper-case letters (an ISO 4217 code such as EUR)")
	default:
		o.Currency = in.Currency
	}
	o.Note = v.note(in.Note)
	return o, v.Err()
}

// validatePatch checks the fields in sets.
func validatePatch(in PatchInput) error {
	var v validator
	if in.Note != nil {
		v.note(*in.Note)
	}
	if in.Status != nil && *in.Status != string(StatusCancelled) {
		v.Add("status", `can only be set to "cancelled"`)
	}
	return v.Err()
}

// Create validates in, then stores the order and enqueues its confirm job
// in one transaction. Errors: a validation error (a user that does not
// exist names user_id, [ErrUnknownUser]); anything else is internal, and
// then neither the order nor the job exists.
func (s *Service) Create(ctx context.Context, in CreateInput) (Created, error) {
	o, err := validateCreate(in)
	if err != nil {
		return Created{}, err
	}
	now := s.timestamp()
	o.Status, o.CreatedAt, o.UpdatedAt = StatusPending, now, now
	c, err := database.Once(ctx, s.db, func(tx *sql.Tx) (Created, error) {
		o := o
		if err := s.store.insert(ctx, tx, &o); err != nil {
			return Created{}, err
		}
		jobID, err := enqueue.InTx(ctx, s.jobs, tx, KindConfirm, ConfirmArgs{OrderID: o.ID})
		return Created{Order: o, ConfirmJobID: jobID}, err
	})
	if err != nil {
		return Created{}, fmt.Errorf("create order: %w", err)
	}
	return c, nil
}

// Get returns order id; a missing order is [ErrNotFound] (wrapped).
func (s *Service) Get(ctx context.Context, id int64) (Order, error) {
	return s.store.get(ctx, id)
}

// List returns a page of orders, newest first.
func (s *Service) List(ctx context.Context, p ListParams) ([]Order, error) {
	return s.store.list(ctx, p)
}

// Update changes the fields in sets and returns the order. A cancelled
// order cannot change ([ErrCancelled]); a pending or confirmed one may be
// cancelled. Errors: a validation error, [ErrNotFound], [ErrCancelled]
// (wrapped). A patch that sets nothing returns the order unchanged.
func (s *Service) Update(ctx context.Context, id int64, in PatchInput) (Order, error) {
	if err := validatePatch(in); err != nil {
		return Order{}, err
	}
	if in.Note == nil && in.Status == nil {
		return s.store.get(ctx, id)
	}
	var status *Status
	if in.Status != nil {
		st := Status(*in.Status)
		status = &st
	}
	return s.store.update(ctx, id, in.Note, status, s.timestamp())
}

// Delete removes order id; a missing order is [ErrNotFound] (wrapped).
// Its confirm job, if it has not run yet, then fails permanently.
func (s *Service) Delete(ctx context.Context, id int64) error {
	return s.store.delete(ctx, id)
}

// isCurrency reports whether s has the shape of an ISO 4217 code.
func isCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := range 3 {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// validator collects field errors.
type validator struct{ apperr.Fields }

// note records what is wrong with a note, if anything, and returns it.
func (v *validator) note(s string) string {
	switch {
	case !utf8.ValidString(s):
		v.Add("note", "must be UTF-8 text")
	case utf8.RuneCountInString(s) > MaxNote:
		v.Add("note", "must be at most %d characters", MaxNote)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		v.Add("note", "must not contain control characters other than newline and tab")
	}
	return s
}
