package reports

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/database"
)

// store is the SQL of the reports and orders tables.
type store struct {
	db *database.DB
}

// newStore returns the store of the tables in db.
func newStore(db *database.DB) *store { return &store{db: db} }

// insert stores a new report whose job is not yet known (job_id 0 until
// setJob, in the same transaction) and returns its id.
func (s *store) insert(ctx context.Context, tx *sql.Tx, kind string, params []byte, now time.Time) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, s.db.Rebind(`INSERT INTO reports (kind, params, job_id, created_at) VALUES (?, ?, 0, ?) RETURNING id`),
		kind, string(params), s.db.Time(now)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert report: %w", err)
	}
	return id, nil
}

// setJob records report id's job.
func (s *store) setJob(ctx context.Context, tx *sql.Tx, id, jobID int64) error {
	if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE reports SET job_id = ? WHERE id = ?`), jobID, id); err != nil {
		return fmt.Errorf("set job of report %d: %w", id, err)
	}
	return nil
}

// get returns report id, or an error wrapping ErrNotFound.
func (s *store) get(ctx context.Context, q database.Querier, id int64) (Report, error) {
	var (
		r        Report
		kind     string
		params   []byte
		blobID   sql.NullString
		rowCount sql.NullInt64
	)
	err := q.QueryRowContext(ctx, s.db.Rebind(`SELECT id, kind, params, job_id, blob_id, row_count, created_at, completed_at FROM reports WHERE id = ?`), id).
		Scan(&r.ID, &kind, &params, &r.JobID, &blobID, &rowCount, database.ScanTime(&r.CreatedAt), database.ScanTime(&r.CompletedAt))
	if errors.Is(err, sql.ErrNoRows) {
		return Report{}, fmt.Errorf("report %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Report{}, fmt.Errorf("read report %d: %w", id, err)
	}
	if err := json.Unmarshal(params, &r.Params); err != nil {
		return Report{}, fmt.Errorf("report %d: decode parameters: %w", id, err)
	}
	r.Params.Kind = kind
	r.BlobID, r.RowCount = blobID.String, rowCount.Int64
	return r, nil
}

// errLinkLost means a report no longer expects the blob an attempt is
// writing: the report was completed or deleted, or another attempt took
// it over.
var errLinkLost = errors.New("the report no longer expects this attempt's file")

// linkBlob records blobID as report id's file in progress, so that a
// later attempt can find and delete it should this one die. Its errors
// do not name the report: the file's writer does.
func (s *store) linkBlob(ctx context.Context, id int64, blobID string) error {
	res, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE reports SET blob_id = ? WHERE id = ? AND completed_at IS NULL`), blobID, id)
	if err != nil {
		return fmt.Errorf("link the file: %w", err)
	}
	return oneRow(res, "link the file")
}

// unlinkBlob clears report id's unfinished file reference if it is still
// blobID.
func (s *store) unlinkBlob(ctx context.Context, id int64, blobID string) error {
	if _, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE reports SET blob_id = NULL WHERE id = ? AND blob_id = ? AND completed_at IS NULL`), id, blobID); err != nil {
		return fmt.Errorf("unlink file from report %d: %w", id, err)
	}
	return nil
}

// isFinishedFile reports whether blob id is the file of a finished
// report.
func (s *store) isFinishedFile(ctx context.Context, blobID string) (bool, error) {
	var n int
	err := s.db.W.QueryRowContext(ctx, s.db.Rebind(`SELECT count(*) FROM reports WHERE blob_id = ? AND completed_at IS NOT NULL`), blobID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up the report of file %s: %w", blobID, err)
	}
	return n > 0, nil
}

// complete marks report id finished with its file and row count, provided
// it is unfinished and still linked to blobID.
func (s *store) complete(ctx context.Context, tx *sql.Tx, id int64, blobID string, rows int64, now time.Time) error {
	res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE reports SET row_count = ?, completed_at = ? WHERE id = ? AND blob_id = ? AND completed_at IS NULL`),
		rows, s.db.Time(now), id, blobID)
	if err != nil {
		return fmt.Errorf("complete report %d: %w", id, err)
	}
	return oneRow(res, fmt.Sprintf("complete report %d", id))
}

func oneRow(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n != 1 {
		return fmt.Errorf("%s: %w", what, errLinkLost)
	}
	return nil
}

// filter is the WHERE clause of the orders a report covers, on orders
// aliased o.
type filter struct {
	where string
	args  []any
}

func (s *store) filter(p Params) filter {
	var f filter
	conds := []string{"o.status IN (?" + strings.Repeat(", ?", len(p.Statuses)-1) + ")"}
	for _, st := range p.Statuses {
		f.args = append(f.args, st)
	}
	if p.Currency != "" {
		conds = append(conds, "o.currency = ?")
		f.args = append(f.args, p.Currency)
	}
	if !p.From.IsZero() {
		conds = append(conds, "o.created_at >= ?")
		f.args = append(f.args, s.db.Time(p.From))
	}
	if !p.To.IsZero() {
		conds = append(conds, "o.created_at < ?")
		f.args = append(f.args, s.db.Time(p.To))
	}
	f.where = strings.Join(conds, " AND ")
	return f
}

// countOrders returns how many orders match f and the largest matching
// id; a report covers the orders up to that id, as they were when it
// started.
func (s *store) countOrders(ctx context.Context, f filter) (n, maxID int64, err error) {
	err = s.db.R.QueryRowContext(ctx, s.db.Rebind(`SELECT count(*), coalesce(max(o.id), 0) FROM orders o WHERE `+f.where), f.args...).Scan(&n, &maxID)
	if err != nil {
		return 0, 0, fmt.Errorf("count orders: %w", err)
	}
	return n, maxID, nil
}

// order is one order as a report reads it.
type order struct {
	ID, UserID  int64
	Email, Name string
	Currency    string
	Cents       int64
	CreatedAt   time.Time
}

// orderPage calls fn for up to limit orders matching f with afterID < id
// <= maxID, in id order, and returns how many it read and the last id.
func (s *store) orderPage(ctx context.Context, f filter, afterID, maxID int64, limit int, fn func(order) error) (n int, last int64, err error) {
	q := `SELECT o.id, o.user_id, u.email, u.name, o.currency, o.amount_cents, o.created_at
FROM orders o JOIN users u ON u.id = o.user_id
WHERE o.id > ? AND o.id <= ? AND ` + f.where + ` ORDER BY o.id LIMIT ?`
	args := append([]any{afterID, maxID}, f.args...)
	args = append(args, limit)
	rows, err := s.db.R.QueryContext(ctx, s.db.Rebind(q), args...)
	if err != nil {
		return 0, 0, fmt.Errorf("read orders after %d: %w", afterID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var o order
		if err := rows.Scan(&o.ID, &o.UserID, &o.Email, &o.Name, &o.Currency, &o.Cents, database.ScanTime(&o.CreatedAt)); err != nil {
			return n, last, fmt.Errorf("read orders after %d: %w", afterID, err)
		}
		if err := fn(o); err != nil {
			return n, last, err
		}
		n++
		last = o.ID
	}
	if err := rows.Err(); err != nil {
		return n, last, fmt.Errorf("read orders after %d: %w", afterID, err)
	}
	return n, last, nil
}
