package pgdriver

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/internal/rowbatch"
	"github.com/kilnhq/kiln/queue/internal/sqlscan"
)

// Batch insert tuning. Plain rows (no unique key) go in one INSERT …
// SELECT FROM unnest(arrays) per insertChunk rows, which costs one round
// trip whatever the count; from copyThreshold rows on, COPY is faster
// (see insertCopy).
const (
	insertChunk   = 10000
	copyThreshold = 1000
)

// insertSQL inserts rows given as parallel arrays, in array order, and
// notifies the queues that got available jobs, in one statement.
var insertSQL = `WITH changed AS (
   INSERT INTO kiln_jobs (kind, queue, args, state, priority, max_attempts, run_at, created_at, unique_key, retry, timeout_ms, metadata)
   SELECT r.kind, r.queue, r.args::jsonb, r.state, r.priority, r.max_attempts, r.run_at, $8, r.unique_key, r.retry::jsonb, r.timeout_ms, r.metadata::jsonb
   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::timestamptz[],
     $9::text[], $10::text[], $11::bigint[], $12::text[]) WITH ORDINALITY
     AS r(kind, queue, args, state, priority, max_attempts, run_at, unique_key, retry, timeout_ms, metadata, ord)
   ORDER BY r.ord
   RETURNING id, queue, state),
 ` + withNotify(13) + `
 SELECT changed.id FROM changed, notified`

// uniqueSQL finds the newest job of a kind and unique key that blocks a
// new one.
const uniqueSQL = `SELECT ` + jobCols + ` FROM kiln_jobs j
 WHERE j.kind = $1 AND j.unique_key = $2 AND ($3::timestamptz IS NULL OR j.created_at >= $3)
   AND j.state = ANY($4::text[])
 ORDER BY j.id DESC LIMIT 1`

// uniqueLockSQL serialises inserts of one kind and unique key across
// processes until the transaction ends.
const uniqueLockSQL = `SELECT pg_advisory_xact_lock($1)`

// uniqueLockKey hashes a kind and unique key into an advisory lock key.
func uniqueLockKey(kind, key string) int64 {
	h := fnv.New64a()
	h.Write([]byte("kiln.unique\x00"))
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return int64(h.Sum64())
}

// insertArgs returns the arguments of insertSQL for rows[idx].
func (d *Driver) insertArgs(now time.Time, rows []queue.Row, idx []int) ([]any, error) {
	n := len(idx)
	var (
		kinds    = make([]string, n)
		queues   = make([]string, n)
		args     = make([]string, n)
		states   = make([]string, n)
		prios    = make([]int32, n)
		maxAtt   = make([]int32, n)
		runAt    = make([]time.Time, n)
		uniq     = make([]*string, n)
		retry    = make([]*string, n)
		timeouts = make([]int64, n)
		meta     = make([]*string, n)
	)
	for k, i := range idx {
		r := &rows[i]
		kinds[k], queues[k], args[k], states[k] = r.Kind, r.Queue, string(r.Args), string(r.State)
		prios[k], maxAtt[k], runAt[k], timeouts[k] = int32(r.Priority), int32(r.MaxAttempts), r.RunAt, r.Timeout.Milliseconds()
		if r.UniqueKey != "" {
			uniq[k] = &r.UniqueKey
		}
		if r.Retry != nil {
			b, err := json.Marshal(r.Retry)
			if err != nil {
				return nil, err
			}
			s := string(b)
			retry[k] = &s
		}
		if len(r.Metadata) > 0 {
			s := string(r.Metadata)
			meta[k] = &s
		}
	}
	return []any{kinds, queues, args, states, prios, maxAtt, runAt, now, uniq, retry, timeouts, meta, d.channel}, nil
}

func rowJob(id int64, r queue.Row, now time.Time) *queue.Job {
	return &queue.Job{
		ID: id, Kind: r.Kind, Queue: r.Queue, Args: r.Args, State: r.State, Priority: r.Priority,
		MaxAttempts: r.MaxAttempts, RunAt: r.RunAt.Truncate(time.Microsecond).UTC(),
		CreatedAt: now.Truncate(time.Microsecond).UTC(), UniqueKey: r.UniqueKey, Retry: r.Retry,
		Timeout: r.Timeout.Truncate(time.Millisecond), Metadata: r.Metadata,
	}
}

// txq is a transaction jobs are inserted in: a pgx one (the driver's, or
// the caller's pgx.Tx) or a caller's *sql.Tx.
type txq interface {
	ids(ctx context.Context, sql string, args ...any) ([]int64, error)
	exec(ctx context.Context, sql string, args ...any) error
	job(ctx context.Context, sql string, args ...any) (*queue.Job, error) // nil when no row
	// pgx returns the pgx querier when COPY is possible.
	pgx() querier
}

type pgxTxq struct{ q querier }

func (t pgxTxq) ids(ctx context.Context, sql string, args ...any) ([]int64, error) {
	rows, err := t.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

func (t pgxTxq) exec(ctx context.Context, sql string, args ...any) error {
	_, err := t.q.Exec(ctx, sql, args...)
	return err
}

func (t pgxTxq) job(ctx context.Context, sql string, args ...any) (*queue.Job, error) {
	j, err := scanJob(t.q.QueryRow(ctx, sql, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return j, err
}

func (t pgxTxq) pgx() querier { return t.q }

type sqlTxq struct{ tx *sql.Tx }

func (t sqlTxq) ids(ctx context.Context, query string, args ...any) ([]int64, error) {
	rows, err := t.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlscan.Column[int64](rows)
}

func (t sqlTxq) exec(ctx context.Context, query string, args ...any) error {
	_, err := t.tx.ExecContext(ctx, query, args...)
	return err
}

func (t sqlTxq) job(ctx context.Context, query string, args ...any) (*queue.Job, error) {
	j, err := scanJob(t.tx.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return j, err
}

func (t sqlTxq) pgx() querier { return nil }

// InsertMany inserts rows in order inside tx — a pgx.Tx on [Driver.Pool],
// a *sql.Tx from [Driver.DB], or nil for a transaction of the driver's
// own — and notifies the queues that got available jobs when it commits.
// A row with a unique key is inserted only if no job of its kind and key
// in its unique states exists; an advisory lock on the kind and key,
// held to the end of the transaction, keeps concurrent inserts from
// both inserting.
func (d *Driver) InsertMany(ctx context.Context, tx any, now time.Time, rows []queue.Row) ([]queue.InsertResult, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	var out []queue.InsertResult
	var err error
	switch t := tx.(type) {
	case nil:
		out, err = d.insertOwn(ctx, now, rows)
	case pgx.Tx:
		out, err = d.insertMany(ctx, pgxTxq{t}, now, rows)
	case *sql.Tx:
		out, err = d.insertMany(ctx, sqlTxq{t}, now, rows)
	default:
		return nil, fmt.Errorf("%w: the postgres driver takes a pgx.Tx from its Pool() or a *sql.Tx from its DB(), got %T", queue.ErrInvalid, tx)
	}
	if err != nil {
		return nil, d.insertError(err)
	}
	return out, nil
}

// insertError explains a failed insert: values PostgreSQL cannot store
// (a \u0000 escape in JSON, a NUL byte in text) are invalid input.
func (d *Driver) insertError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case codeUntranslatable, "22021": // character_not_in_repertoire
			return fmt.Errorf("%w: PostgreSQL cannot store it: %s", queue.ErrInvalid, pgErr.Message)
		}
	}
	if errors.Is(err, queue.ErrInvalid) {
		return err
	}
	return d.explain("insert jobs", err)
}

// insertOwn inserts in the driver's own transaction. The common cases — a
// few plain rows — take one statement in autocommit: one round trip.
func (d *Driver) insertOwn(ctx context.Context, now time.Time, rows []queue.Row) ([]queue.InsertResult, error) {
	simple := len(rows) < copyThreshold
	for i := range rows {
		if rows[i].UniqueKey != "" {
			simple = false
			break
		}
	}
	if simple {
		idx := make([]int, len(rows))
		for i := range idx {
			idx[i] = i
		}
		out := make([]queue.InsertResult, len(rows))
		if err := d.insertPlain(ctx, pgxTxq{d.pool}, now, rows, idx, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	var out []queue.InsertResult
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		var err error
		out, err = d.insertMany(ctx, pgxTxq{tx}, now, rows)
		return err
	})
	return out, err
}

// insertMany inserts rows in t: plain rows in batches, rows with a unique
// key one by one in order, so that a batch may hold duplicates of itself.
func (d *Driver) insertMany(ctx context.Context, t txq, now time.Time, rows []queue.Row) ([]queue.InsertResult, error) {
	insert := func(idx []int, out []queue.InsertResult) error {
		return d.insertPlain(ctx, t, now, rows, idx, out)
	}
	return rowbatch.Insert(rows, insertChunk, insert, func(r queue.Row) (*queue.Job, error) {
		// The lock is its own statement: a statement's snapshot is taken
		// when it starts, so the lookup must start after the lock is held
		// to see a duplicate committed by the previous holder.
		if err := t.exec(ctx, uniqueLockSQL, uniqueLockKey(r.Kind, r.UniqueKey)); err != nil {
			return nil, fmt.Errorf("lock unique key: %w", err)
		}
		var since *time.Time
		if !r.UniqueSince.IsZero() {
			since = &r.UniqueSince
		}
		existing, err := t.job(ctx, uniqueSQL, r.Kind, r.UniqueKey, since, strs(r.UniqueStates))
		if err != nil {
			return nil, fmt.Errorf("unique lookup: %w", err)
		}
		return existing, nil
	})
}

// insertPlain inserts rows[idx] and fills out[idx].
func (d *Driver) insertPlain(ctx context.Context, t txq, now time.Time, rows []queue.Row, idx []int, out []queue.InsertResult) error {
	// COPY and the statements around it need a transaction.
	if tx, ok := t.pgx().(pgx.Tx); ok && len(idx) >= copyThreshold {
		return d.insertCopy(ctx, tx, now, rows, idx, out)
	}
	args, err := d.insertArgs(now, rows, idx)
	if err != nil {
		return err
	}
	ids, err := t.ids(ctx, insertSQL, args...)
	if err != nil {
		return err
	}
	if len(ids) != len(idx) {
		return fmt.Errorf("insert returned %d ids for %d rows", len(ids), len(idx))
	}
	// Ids are drawn in insertion (array) order; RETURNING may list them
	// in any.
	slices.Sort(ids)
	for k, i := range idx {
		out[i] = queue.InsertResult{Job: rowJob(ids[k], rows[i], now)}
	}
	return nil
}

var copyCols = []string{"id", "kind", "queue", "args", "state", "priority", "max_attempts", "run_at", "created_at", "retry", "timeout_ms", "metadata"}

// insertCopy inserts plain rows with COPY, which streams them without
// per-row statement overhead. COPY cannot return ids, so they are drawn
// from the table's sequence first, in one round trip; the notification
// follows in the same transaction.
func (d *Driver) insertCopy(ctx context.Context, q querier, now time.Time, rows []queue.Row, idx []int, out []queue.InsertResult) error {
	res, err := q.Query(ctx, `SELECT nextval('kiln_jobs_id_seq') FROM generate_series(1, $1)`, len(idx))
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(res, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	if len(ids) != len(idx) {
		return fmt.Errorf("reserved %d ids for %d rows", len(ids), len(idx))
	}
	slices.Sort(ids)
	var notify []string
	k := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if k == len(idx) {
			return nil, nil
		}
		i := idx[k]
		r := &rows[i]
		var retry, meta any
		if r.Retry != nil {
			b, err := json.Marshal(r.Retry)
			if err != nil {
				return nil, err
			}
			retry = string(b)
		}
		if len(r.Metadata) > 0 {
			meta = string(r.Metadata)
		}
		if r.State == queue.StateAvailable && !slices.Contains(notify, r.Queue) {
			notify = append(notify, r.Queue)
		}
		v := []any{ids[k], r.Kind, r.Queue, string(r.Args), string(r.State), int32(r.Priority), int32(r.MaxAttempts),
			r.RunAt, now, retry, r.Timeout.Milliseconds(), meta}
		out[i] = queue.InsertResult{Job: rowJob(ids[k], *r, now)}
		k++
		return v, nil
	})
	if _, err := q.CopyFrom(ctx, pgx.Identifier{"kiln_jobs"}, copyCols, src); err != nil {
		return err
	}
	if len(notify) > 0 {
		if _, err := q.Exec(ctx, `SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q`, d.channel, notify); err != nil {
			return err
		}
	}
	return nil
}
