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

type scanner interface {
	Scan(dest ...any) error
}

func scanOrder(row scanner, o *Order) error {
	return row.Scan(&o.ID, &o.UserID, &o.Status, &o.AmountCents, &o.Currency, &o.Note,
		database.ScanTime(&o.CreatedAt), database.ScanTime(&o.UpdatedAt), database.ScanTime(&o.ConfirmedAt))
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
	var o Order
	if err := scanOrder(s.db.R.QueryRowContext(ctx, s.qGet, id), &o); err != nil {
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
	var o Order
	err := scanOrder(s.db.W.QueryRowContext(ctx, s.qUpdate, noteArg, statusArg, s.db.Time(now), id), &o)
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
	res, err := s.db.W.ExecContext(ctx, s.qDelete, id)
	if err != nil {
		return fmt.Errorf("delete order %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("delete order %d: %w", id, err)
	}
	if n == 0 {
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
	res, err := s.db.W.ExecContext(ctx, s.qConfirm, t, t, id)
	if err != nil {
		return false, "", fmt.Errorf("confirm order %d: %w", id, err)
	}
	n, err := res.RowsAffected()
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
	var b strings.Builder
	args := make([]any, 0, 6+len(p.Statuses))
	b.WriteString("SELECT " + columns + " FROM orders WHERE 1 = 1")
	if p.UserID > 0 {
		b.WriteString(" AND user_id = ?")
		args = append(args, p.UserID)
	}
	if len(p.Statuses) > 0 {
		b.WriteString(" AND status IN (?" + strings.Repeat(", ?", len(p.Statuses)-1) + ")")
		for _, st := range p.Statuses {
			args = append(args, string(st))
		}
	}
	// Stored times have microseconds: after t means after t rounded
	// down, before t before t rounded up, the same on both databases.
	if !p.CreatedAfter.IsZero() {
		b.WriteString(" AND created_at > ?")
		args = append(args, s.db.Time(p.CreatedAfter.Truncate(time.Microsecond)))
	}
	if t := p.CreatedBefore; !t.IsZero() {
		if d := t.Truncate(time.Microsecond); d.Before(t) {
			t = d.Add(time.Microsecond)
		}
		b.WriteString(" AND created_at < ?")
		args = append(args, s.db.Time(t))
	}
	if p.AfterID > 0 {
		b.WriteString(" AND id < ?")
		args = append(args, p.AfterID)
	}
	b.WriteString(" ORDER BY id DESC LIMIT ?")
	args = append(args, p.Limit)
	rows, err := s.db.R.QueryContext(ctx, s.db.Rebind(b.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	out := make([]Order, 0, min(p.Limit, 128))
	for rows.Next() {
		var o Order
		if err := scanOrder(rows, &o); err != nil {
			return nil, fmt.Errorf("list orders: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return out, nil
}
