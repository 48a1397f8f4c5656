package webhooks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/database"
)

// store is the SQL of the webhook tables.
type store struct {
	db *database.DB
}

// endpointNotFound is the error for endpoint id, which does not exist.
func endpointNotFound(id int64) error {
	return apperr.Wrapf(fmt.Errorf("webhook endpoint %d: %w", id, ErrNotFound), "no webhook has this id")
}

// deliveryNotFound is the error for delivery id, which does not exist.
func deliveryNotFound(id int64) error {
	return apperr.Wrapf(fmt.Errorf("webhook delivery %d: %w", id, ErrNotFound), "no webhook delivery has this id")
}

// newStore returns the store of the tables in db.
func newStore(db *database.DB) *store { return &store{db: db} }

const endpointColumns = `id, url, description, secret, created_at`

func scanEndpoint(sc database.Scanner) (Endpoint, error) {
	var e Endpoint
	err := sc.Scan(&e.ID, &e.URL, &e.Description, &e.Secret, database.ScanTime(&e.CreatedAt))
	return e, err
}

// insertEndpoint stores e and sets its id.
func (s *store) insertEndpoint(ctx context.Context, q database.Querier, e *Endpoint) error {
	err := q.QueryRowContext(ctx, s.db.Rebind(`INSERT INTO webhook_endpoints (url, description, secret, created_at) VALUES (?, ?, ?, ?) RETURNING id`),
		e.URL, e.Description, e.Secret, s.db.Time(e.CreatedAt)).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("insert webhook endpoint: %w", err)
	}
	return nil
}

// endpoint returns endpoint id from q, or an error wrapping ErrNotFound.
func (s *store) endpoint(ctx context.Context, q database.Querier, id int64) (Endpoint, error) {
	e, err := scanEndpoint(q.QueryRowContext(ctx, s.db.Rebind(`SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Endpoint{}, endpointNotFound(id)
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("read webhook endpoint %d: %w", id, err)
	}
	return e, nil
}

// ListParams page a listing, newest first: at most Limit rows with ids
// below AfterID (0: from the newest).
type ListParams struct {
	Limit   int
	AfterID int64
}

// endpoints returns a page of endpoints, newest first.
func (s *store) endpoints(ctx context.Context, p ListParams) ([]Endpoint, error) {
	query, args := database.NewSelect(`SELECT `+endpointColumns+` FROM webhook_endpoints`).Newest(p.AfterID, p.Limit)
	es, err := database.QueryAll(ctx, s.db.R, s.db.Rebind(query), args, scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	return es, nil
}

// deleteEndpoint deletes endpoint id and, explicitly rather than only
// through ON DELETE CASCADE, its deliveries and their attempts.
func (s *store) deleteEndpoint(ctx context.Context, tx *sql.Tx, id int64) error {
	n, err := database.Exec(ctx, tx, s.db.Rebind(`DELETE FROM webhook_endpoints WHERE id = ?`), id)
	switch {
	case err != nil:
		return fmt.Errorf("delete webhook endpoint %d: %w", id, err)
	case n == 0:
		return endpointNotFound(id)
	}
	if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE endpoint_id = ?)`), id); err != nil {
		return fmt.Errorf("delete the attempts of webhook endpoint %d: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM webhook_deliveries WHERE endpoint_id = ?`), id); err != nil {
		return fmt.Errorf("delete the deliveries of webhook endpoint %d: %w", id, err)
	}
	return nil
}

const deliveryColumns = `id, endpoint_id, event, payload, job_id, status, attempts, last_error, created_at, finished_at`

func scanDelivery(sc database.Scanner) (Delivery, error) {
	var (
		d       Delivery
		payload string
		status  string
	)
	err := sc.Scan(&d.ID, &d.EndpointID, &d.Event, &payload, &d.JobID, &status, &d.Attempts, &d.LastError,
		database.ScanTime(&d.CreatedAt), database.ScanTime(&d.FinishedAt))
	d.Payload, d.Status = []byte(payload), DeliveryStatus(status)
	return d, err
}

// insertDelivery stores d, whose job is not yet known (job_id 0 until
// setJob, in the same transaction), and sets its id.
func (s *store) insertDelivery(ctx context.Context, tx *sql.Tx, d *Delivery) error {
	err := tx.QueryRowContext(ctx, s.db.Rebind(`INSERT INTO webhook_deliveries (endpoint_id, event, payload, job_id, status, created_at) VALUES (?, ?, ?, 0, ?, ?) RETURNING id`),
		d.EndpointID, d.Event, string(d.Payload), string(StatusPending), s.db.Time(d.CreatedAt)).Scan(&d.ID)
	if err != nil {
		return fmt.Errorf("insert webhook delivery: %w", err)
	}
	return nil
}

// setJob records delivery id's job.
func (s *store) setJob(ctx context.Context, tx *sql.Tx, id, jobID int64) error {
	if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE webhook_deliveries SET job_id = ? WHERE id = ?`), jobID, id); err != nil {
		return fmt.Errorf("set job of webhook delivery %d: %w", id, err)
	}
	return nil
}

// delivery returns delivery id, or an error wrapping ErrNotFound.
func (s *store) delivery(ctx context.Context, q database.Querier, id int64) (Delivery, error) {
	d, err := scanDelivery(q.QueryRowContext(ctx, s.db.Rebind(`SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, deliveryNotFound(id)
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("read webhook delivery %d: %w", id, err)
	}
	return d, nil
}

// deliveries returns a page of endpoint id's deliveries, newest first.
func (s *store) deliveries(ctx context.Context, endpointID int64, p ListParams) ([]Delivery, error) {
	query, args := database.NewSelect(`SELECT `+deliveryColumns+` FROM webhook_deliveries`).
		Where("endpoint_id = ?", endpointID).Newest(p.AfterID, p.Limit)
	ds, err := database.QueryAll(ctx, s.db.R, s.db.Rebind(query), args, scanDelivery)
	if err != nil {
		return nil, fmt.Errorf("list webhook deliveries: %w", err)
	}
	return ds, nil
}

// attempts returns delivery id's attempts in order.
func (s *store) attempts(ctx context.Context, id int64) ([]Attempt, error) {
	as, err := database.QueryAll(ctx, s.db.R, s.db.Rebind(`SELECT seq, job_attempt, started_at, duration_ms, status_code, error, outcome, response_body, retry_at
FROM webhook_attempts WHERE delivery_id = ? ORDER BY seq`), []any{id}, func(sc database.Scanner) (Attempt, error) {
		var (
			a       Attempt
			ms      int64
			code    sql.NullInt64
			outcome string
		)
		err := sc.Scan(&a.Number, &a.JobAttempt, database.ScanTime(&a.StartedAt), &ms, &code, &a.Error, &outcome, &a.ResponseBody, database.ScanTime(&a.RetryAt))
		a.Duration, a.StatusCode, a.Outcome = time.Duration(ms)*time.Millisecond, int(code.Int64), Outcome(outcome)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the attempts of webhook delivery %d: %w", id, err)
	}
	return as, nil
}

// target is what an attempt needs: the delivery and its endpoint.
type target struct {
	Delivery
	URL, Secret string
}

// target returns delivery id with its endpoint's URL and secret, or an
// error wrapping ErrNotFound.
func (s *store) target(ctx context.Context, id int64) (target, error) {
	var t target
	var payload, status string
	err := s.db.R.QueryRowContext(ctx, s.db.Rebind(`SELECT d.id, d.endpoint_id, d.event, d.payload, d.job_id, d.status, d.attempts, d.last_error, d.created_at, e.url, e.secret
FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = ?`), id).
		Scan(&t.ID, &t.EndpointID, &t.Event, &payload, &t.JobID, &status, &t.Attempts, &t.LastError, database.ScanTime(&t.CreatedAt), &t.URL, &t.Secret)
	if errors.Is(err, sql.ErrNoRows) {
		return target{}, deliveryNotFound(id)
	}
	if err != nil {
		return target{}, fmt.Errorf("read webhook delivery %d: %w", id, err)
	}
	t.Payload, t.Status = []byte(payload), DeliveryStatus(status)
	return t, nil
}

// record stores attempt a of delivery id (numbering it) and, when
// status is not pending, finishes the delivery with it; lastError is
// the delivery's last error ("" clears it). It returns the attempt's
// number.
func (s *store) record(ctx context.Context, id int64, a Attempt, status DeliveryStatus, now time.Time) (int, error) {
	var n int
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, s.db.Rebind(`SELECT coalesce(max(seq), 0) + 1 FROM webhook_attempts WHERE delivery_id = ?`), id).Scan(&n); err != nil {
			return fmt.Errorf("number the attempt: %w", err)
		}
		var code any
		if a.StatusCode != 0 {
			code = a.StatusCode
		}
		_, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO webhook_attempts (delivery_id, seq, job_attempt, started_at, duration_ms, status_code, error, outcome, response_body, retry_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			id, n, a.JobAttempt, s.db.Time(a.StartedAt), a.Duration.Milliseconds(), code, a.Error, string(a.Outcome), a.ResponseBody, s.db.Time(a.RetryAt))
		if err != nil {
			return fmt.Errorf("insert the attempt: %w", err)
		}
		var finished any
		if status != StatusPending {
			finished = s.db.Time(now)
		}
		res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE webhook_deliveries SET attempts = ?, status = ?, last_error = ?, finished_at = ? WHERE id = ?`),
			n, string(status), a.Error, finished, id)
		if err != nil {
			return fmt.Errorf("update the delivery: %w", err)
		}
		if k, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("update the delivery: %w", err)
		} else if k == 0 {
			return ErrNotFound
		}
		return nil
	})
	if database.IsForeignKeyViolation(err) {
		// The endpoint, and so the delivery, was deleted meanwhile.
		err = ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("record attempt of webhook delivery %d: %w", id, err)
	}
	return n, nil
}
