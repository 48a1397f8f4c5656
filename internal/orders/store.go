package orders

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

// Status is an order's state: pending until its confirm job runs, then
// confirmed; cancelled by a client at any time, after which it cannot
// change.
type Status string

// The statuses.
const (
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusCancelled Status = "cancelled"
)

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool {
	return s == StatusPending || s == StatusConfirmed || s == StatusCancelled
}

// Order is a stored order. Money is an integer number of the currency's
// minor units.
type Order struct {
	ID          int64
	UserID      int64
	Status      Status
	AmountCents int64
	Currency    string
	Note        string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// ConfirmedAt is zero until the order is confirmed.
	ConfirmedAt time.Time
}

// Errors of the store, returned wrapped; test for them with errors.Is.
var (
	// ErrNotFound: no order has the id.
	ErrNotFound = apperr.New(apperr.CodeNotFound, "order not found")
	// ErrUnknownUser: the order's user does not exist.
	ErrUnknownUser = apperr.Invalid([]apperr.FieldError{{Field: "user_id", Message: "no user has this id"}})
	// ErrCancelled: a cancelled order cannot change.
	ErrCancelled = apperr.New(apperr.CodeConflict, "order is cancelled")
)

// notFound is the error for order id, which does not exist.
func notFound(id int64) error { return apperr.Wrapf(ErrNotFound, "order %d does not exist", id) }

const columns = "id, user_id, status, amount_cents, currency, note, created_at, updated_at, confirmed_at"

// store reads and writes the orders table.
type store struct {
	db *database.DB
	// Fixed queries, rebound for the dialect once.
	qGet, qInsert, qUpdate, qDelete, qConfirm, qStatus string
}

// newStore returns a store on db.
func newStore(db *database.DB) *store {
	return &store{
		db:   db,
		qGet: db.Rebind("SELECT " + columns + " FROM orders WHERE id = ?"),
		qInsert: db.Rebind("INSERT INTO orders (user_id, status, amount_cents, currency, note, created_at, updated_at)" +
			" VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"),
		qUpdate: db.Rebind("UPDATE orders SET note = coalesce(?, note), status = coalesce(?, status), updated_at = ?" +
			" WHERE id = ? AND status <> 'cancelled' RETURNING " + columns),
		qDelete: db.Rebind("DELETE FROM orders WHERE id = ?"),
		qConfirm: db.Rebind("UPDATE orders SET status = 'confirmed', confirmed_at = ?, updated_at = ?" +
			" WHERE id = ? AND status = 'pending'"),
		qStatus: db.Rebind("SELECT status FROM orders WHERE id = ?"),
	}
}

func scanOrder(row database.Scanner) (Order, error) {
	var o Order
	err := row.Scan(&o.ID, &o.UserID, &o.Status, &o.AmountCents, &o.Currency, &o.Note,
		database.ScanTime(&o.CreatedAt), database.ScanTime(&o.UpdatedAt), database.ScanTime(&o.ConfirmedAt))
	return o, err
}

// insert stores o with q (a transaction, or the database's W) and sets
// o.ID. An order of a user that does not exist is an error wrapping
// [ErrUnknownUser]; on PostgreSQL it also aborts the transaction.
func (s *store) insert(ctx context.Context, q database.Querier, o *Order) error {
	err := q.QueryRowContext(ctx, s.qInsert, o.UserID, string(o.Status), o.AmountCents, o.Currency, o.Note,
		s.db.Time(o.CreatedAt), s.db.Time(o.UpdatedAt)).Scan(&o.ID)
	if err != nil {
		if database.IsForeignKeyViolation(err) {
			return fmt.Errorf("insert order of user %d: %w", o.UserID, ErrUnknownUser)
		}
		return fmt.Errorf("insert order: %w", err)
	}
	return nil
}

// get returns order id, or an error wrapping [ErrNotFound].
func (s *store) get(ctx context.Context, id int64) (Order, error) {
	o, err := scanOrder(s.db.R.QueryRowContext(ctx, s.qGet, id))
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return o, notFound(id)
		}
		return o, fmt.Errorf("get order %d: %w", id, err)
	}
	return o, nil
}

// update sets the note and status of order id to those that are not nil,
// and its updated_at to now, unless the order is cancelled; it returns
// the order as stored. Errors wrap [ErrNotFound] or [ErrCancelled]. The
// check and the change are one statement, so a concurrent cancel cannot
// slip between them.
func (s *store) update(ctx context.Context, id int64, note *string, status *Status, now time.Time) (Order, error) {
	var noteArg, statusArg any
	if note != nil {
		noteArg = *note
	}
	if status != nil {
		statusArg = string(*status)
	}
	o, err := scanOrder(s.db.W.QueryRowContext(ctx, s.qUpdate, noteArg, statusArg, s.db.Time(now), id))
	if errors.Is(err, sql.ErrNoRows) {
		// Missing, or cancelled: tell which.
		if _, err := s.get(ctx, id); err != nil {
			return o, fmt.Errorf("update order: %w", err)
		}
		return o, apperr.Wrapf(ErrCancelled, "order %d is cancelled and cannot change", id)
	}
	if err != nil {
		return o, fmt.Errorf("update order %d: %w", id, err)
	}
	return o, nil
}

// delete removes order id; a missing order is [ErrNotFound] (wrapped).
func (s *store) delete(ctx context.Context, id int64) error {
	n, err := database.Exec(ctx, s.db.W, s.qDelete, id)
	switch {
	case err != nil:
		return fmt.Errorf("delete order %d: %w", id, err)
	case n == 0:
		return notFound(id)
	}
	return nil
}

// confirm moves order id from pending to confirmed at now and returns the
// status the order has afterwards: confirmed when this call confirmed it,
// otherwise the status it already had (confirmed or cancelled), unchanged.
// A missing order is [ErrNotFound] (wrapped).
func (s *store) confirm(ctx context.Context, id int64, now time.Time) (changed bool, status Status, err error) {
	t := s.db.Time(now)
	n, err := database.Exec(ctx, s.db.W, s.qConfirm, t, t, id)
	if err != nil {
		return false, "", fmt.Errorf("confirm order %d: %w", id, err)
	}
	if n == 1 {
		return true, StatusConfirmed, nil
	}
	// Not pending: the order is already confirmed, cancelled or gone.
	if err := s.db.W.QueryRowContext(ctx, s.qStatus, id).Scan(&status); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return false, "", notFound(id)
		}
		return false, "", fmt.Errorf("confirm order %d: %w", id, err)
	}
	return false, status, nil
}

// ListParams selects a page of orders, newest first.
type ListParams struct {
	// UserID, if positive, lists only that user's orders.
	UserID int64
	// Statuses, if any, lists only orders in one of them.
	Statuses []Status
	// CreatedAfter and CreatedBefore, if not zero, list only orders
	// created strictly after or before them.
	CreatedAfter  time.Time
	CreatedBefore time.Time
	// AfterID, if positive, lists orders with a smaller id (the cursor).
	AfterID int64
	// Limit is the page size; it must be positive.
	Limit int
}

// list returns the orders p selects, newest (highest id) first.
func (s *store) list(ctx context.Context, p ListParams) ([]Order, error) {
	q := database.NewSelect("SELECT " + columns + " FROM orders")
	if p.UserID > 0 {
		q.Where("user_id = ?", p.UserID)
	}
	if len(p.Statuses) > 0 {
		args := make([]any, len(p.Statuses))
		for i, st := range p.Statuses {
			args[i] = string(st)
		}
		q.Where("status IN (?"+strings.Repeat(", ?", len(p.Statuses)-1)+")", args...)
	}
	// Stored times have microseconds: after t means after t rounded
	// down, before t before t rounded up, the same on both databases.
	if !p.CreatedAfter.IsZero() {
		q.Where("created_at > ?", s.db.Time(p.CreatedAfter.Truncate(time.Microsecond)))
	}
	if t := p.CreatedBefore; !t.IsZero() {
		if d := t.Truncate(time.Microsecond); d.Before(t) {
			t = d.Add(time.Microsecond)
		}
		q.Where("created_at < ?", s.db.Time(t))
	}
	query, args := q.Newest(p.AfterID, p.Limit)
	os, err := database.QueryAll(ctx, s.db.R, s.db.Rebind(query), args, scanOrder)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return os, nil
}
