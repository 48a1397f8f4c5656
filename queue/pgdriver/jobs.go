package pgdriver

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/internal/claim"
	"github.com/kilnhq/kiln/queue/internal/stats"
)

// jobCols are the columns scanJob reads, qualified by the alias j.
const jobCols = `j.id, j.kind, j.queue, j.args, j.state, j.priority, j.attempt, j.max_attempts, j.run_at, j.created_at,
 j.attempted_at, j.finalized_at, j.attempted_by, j.lease_token, j.lease_expires_at, j.errors, j.progress,
 j.progress_message, j.result, j.unique_key, j.retry, j.timeout_ms, j.cancel_requested, j.metadata`

// scanner is a pgx.Row or a *sql.Row.
type scanner interface{ Scan(dest ...any) error }

func scanJob(s scanner) (*queue.Job, error) {
	var (
		j                                  queue.Job
		args                               string
		state                              string
		attemptedAt, finalizedAt, leaseExp *time.Time
		leaseTok                           *int64
		attemptedBy, errs, progMsg, result *string
		uniq, retry, meta                  *string
		timeoutMS                          int64
	)
	if err := s.Scan(&j.ID, &j.Kind, &j.Queue, &args, &state, &j.Priority, &j.Attempt, &j.MaxAttempts,
		&j.RunAt, &j.CreatedAt, &attemptedAt, &finalizedAt, &attemptedBy, &leaseTok, &leaseExp, &errs,
		&j.Progress, &progMsg, &result, &uniq, &retry, &timeoutMS, &j.CancelRequested, &meta); err != nil {
		return nil, err
	}
	j.Args = json.RawMessage(args)
	j.State = queue.JobState(state)
	j.RunAt, j.CreatedAt = j.RunAt.UTC(), j.CreatedAt.UTC()
	j.AttemptedAt, j.FinalizedAt, j.LeaseExpiresAt = utc(attemptedAt), utc(finalizedAt), utc(leaseExp)
	if leaseTok != nil {
		j.LeaseToken = *leaseTok
	}
	if attemptedBy != nil {
		j.AttemptedBy = *attemptedBy
	}
	if errs != nil && *errs != "" {
		if err := json.Unmarshal([]byte(*errs), &j.Errors); err != nil {
			return nil, fmt.Errorf("job %d: decode errors: %w", j.ID, err)
		}
	}
	if progMsg != nil {
		j.ProgressMessage = *progMsg
	}
	if result != nil {
		j.Result = json.RawMessage(*result)
	}
	if uniq != nil {
		j.UniqueKey = *uniq
	}
	if retry != nil && *retry != "" {
		var p queue.RetryPolicy
		if err := json.Unmarshal([]byte(*retry), &p); err != nil {
			return nil, fmt.Errorf("job %d: decode retry policy: %w", j.ID, err)
		}
		j.Retry = &p
	}
	j.Timeout = time.Duration(timeoutMS) * time.Millisecond
	if meta != nil {
		j.Metadata = json.RawMessage(*meta)
	}
	return &j, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func scanJobs(rows pgx.Rows) ([]*queue.Job, error) {
	defer rows.Close()
	var out []*queue.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// ts returns t as a timestamptz parameter; the zero time is NULL.
func ts(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t, Valid: true}
}

// background detaches ctx from cancellation for writes that must not be
// abandoned half-way by the caller: a claim or an outcome whose commit
// raced a cancellation would be applied without the engine knowing. The
// write is still bounded by a timeout.
func background(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// GetJob returns one job, or an error wrapping queue.ErrNotFound.
func (d *Driver) GetJob(ctx context.Context, id int64) (*queue.Job, error) {
	j, err := scanJob(d.pool.QueryRow(ctx, `SELECT `+jobCols+` FROM kiln_jobs j WHERE j.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, queue.ErrNotFound
	}
	if err != nil {
		return nil, d.explain("read the job", err)
	}
	return j, nil
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// ListJobs returns jobs matching p, by id.
func (d *Driver) ListJobs(ctx context.Context, p queue.ListParams) ([]*queue.Job, error) {
	var args []any
	where := []string{"true"}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if len(p.States) > 0 {
		add("j.state = ANY($?::text[])", strs(p.States))
	}
	if len(p.Kinds) > 0 {
		add("j.kind = ANY($?::text[])", p.Kinds)
	}
	if len(p.Queues) > 0 {
		add("j.queue = ANY($?::text[])", p.Queues)
	}
	order := "ASC"
	if p.Desc {
		order = "DESC"
	}
	if p.AfterID > 0 {
		if p.Desc {
			add("j.id < $?", p.AfterID)
		} else {
			add("j.id > $?", p.AfterID)
		}
	}
	args = append(args, p.Limit)
	q := `SELECT ` + jobCols + ` FROM kiln_jobs j WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY j.id ` + order + ` LIMIT $` + strconv.Itoa(len(args))
	rows, err := d.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, d.explain("list jobs", err)
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return nil, d.explain("list jobs", err)
	}
	return jobs, nil
}

// claimSQL takes the first available jobs of a queue in claim order,
// skipping rows other claims hold locked, in one statement.
const claimSQL = `WITH picked AS (
   SELECT id FROM kiln_jobs
   WHERE state = 'available' AND queue = $1
   ORDER BY priority DESC, run_at, id
   LIMIT $2
   FOR UPDATE SKIP LOCKED)
 UPDATE kiln_jobs j SET state = 'running', attempt = j.attempt + 1, attempted_at = $3,
   attempted_by = $4, lease_token = $5, lease_expires_at = $6, progress = 0, progress_message = NULL
 FROM picked WHERE j.id = picked.id
 RETURNING ` + jobCols

// Claim moves up to p.Limit available jobs of p.Queue to running, in one
// statement, and returns them in claim order.
func (d *Driver) Claim(ctx context.Context, p queue.ClaimParams) ([]*queue.Job, error) {
	ctx, cancel := background(ctx)
	defer cancel()
	rows, err := d.pool.Query(ctx, claimSQL, p.Queue, p.Limit, p.Now, p.ClientID, p.Token, p.LeaseUntil)
	if err != nil {
		return nil, d.explain("claim", err)
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return nil, d.explain("claim", err)
	}
	claim.Sort(jobs)
	return jobs, nil
}

// notifyCTE, appended to a WITH whose data-modifying CTE "changed"
// returns (queue, state), notifies once per queue that got available
// jobs. A query must reference "notified" for it to run; its one row
// joins without changing the result.
const notifyCTE = `notified AS (
   SELECT count(pg_notify(%s, q.queue)) AS n
   FROM (SELECT DISTINCT queue FROM changed WHERE state = 'available') q)`

func withNotify(param int) string { return fmt.Sprintf(notifyCTE, "$"+strconv.Itoa(param)) }

// finishSQL records many outcomes in one statement. Each outcome is fenced
// by its lease (id, attempt, token, running), guarded by ExpiredBefore for
// rescues, and refused when it would leave a job whose cancellation was
// requested unfinished. RETURNING lists the outcomes that applied.
var finishSQL = `WITH o AS (
   SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::int[],
     $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], $10::timestamptz[], $11::int[])
   AS o(id, attempt, token, state, undo, run_at, fin, err, result, expired_before, idx)),
 changed AS (
   UPDATE kiln_jobs j SET
     state = o.state,
     attempt = j.attempt - o.undo,
     run_at = coalesce(o.run_at, j.run_at),
     finalized_at = o.fin,
     errors = CASE WHEN o.err IS NULL THEN j.errors ELSE coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(o.err::jsonb) END,
     result = coalesce(o.result::jsonb, j.result),
     progress = CASE WHEN o.state = 'completed' THEN 100 ELSE j.progress END,
     lease_token = NULL, lease_expires_at = NULL, cancel_requested = false
   FROM o
   WHERE j.id = o.id AND j.attempt = o.attempt AND j.lease_token = o.token AND j.state = 'running'
     AND (o.expired_before IS NULL OR j.lease_expires_at < o.expired_before)
     AND (NOT j.cancel_requested OR o.state IN ('completed', 'failed', 'cancelled'))
   RETURNING o.idx, j.queue, j.state),
 ` + withNotify(12) + `
 SELECT changed.idx FROM changed, notified`

// Finish records outcomes in one transaction, in one statement per set of
// distinct job ids (normally one).
func (d *Driver) Finish(ctx context.Context, outcomes []queue.Outcome) ([]bool, error) {
	ctx, cancel := background(ctx)
	defer cancel()
	applied := make([]bool, len(outcomes))
	if len(outcomes) == 0 {
		return applied, nil
	}
	ids := make([]int64, len(outcomes))
	for i, o := range outcomes {
		ids[i] = o.Lease.ID
	}
	run := func(q querier, idx []int) error {
		n := len(idx)
		var (
			jobIDs   = make([]int64, n)
			attempts = make([]int32, n)
			tokens   = make([]int64, n)
			states   = make([]string, n)
			undo     = make([]int32, n)
			runAt    = make([]pgtype.Timestamptz, n)
			fin      = make([]pgtype.Timestamptz, n)
			errs     = make([]*string, n)
			results  = make([]*string, n)
			expired  = make([]pgtype.Timestamptz, n)
			pos      = make([]int32, n)
		)
		for k, i := range idx {
			o := outcomes[i]
			jobIDs[k], attempts[k], tokens[k] = o.Lease.ID, int32(o.Lease.Attempt), o.Lease.Token
			states[k] = string(o.State)
			if o.UndoAttempt {
				undo[k] = 1
			}
			if o.State.Final() {
				fin[k] = ts(o.At)
			} else {
				runAt[k] = ts(o.RunAt)
			}
			if o.Error != nil {
				b, err := json.Marshal(o.Error)
				if err != nil {
					return err
				}
				s := string(b)
				errs[k] = &s
			}
			if o.State == queue.StateCompleted && len(o.Result) > 0 {
				s := string(o.Result)
				results[k] = &s
			}
			expired[k] = ts(o.ExpiredBefore)
			pos[k] = int32(i)
		}
		rows, err := q.Query(ctx, finishSQL, jobIDs, attempts, tokens, states, undo, runAt, fin, errs, results, expired, pos, d.channel)
		if err != nil {
			return err
		}
		return markPositions(rows, applied)
	}
	err := d.batched(ctx, ids, run)
	if err != nil {
		return nil, d.explain("finish jobs", err)
	}
	return applied, nil
}

// querier is what pgxpool.Pool, pgxpool.Conn and pgx.Tx have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error)
}

// batched runs fn over the indexes of ids split into rounds of distinct
// ids (an UPDATE … FROM applies one of several rows matching the same
// target row): one statement in autocommit when there is one round, the
// usual case, else one transaction. A deadlock with another batch (rows
// locked in different orders) is retried.
func (d *Driver) batched(ctx context.Context, ids []int64, fn func(q querier, idx []int) error) error {
	rounds := distinctRounds(ids)
	for try := 0; ; try++ {
		var err error
		if len(rounds) == 1 {
			err = fn(d.pool, rounds[0])
		} else {
			err = pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
				for _, r := range rounds {
					if err := fn(tx, r); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err == nil || try >= 3 || !retryable(err) {
			return err
		}
	}
}

// retryable reports a deadlock or serialization failure: the transaction
// was rolled back and may be run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == codeDeadlock || pgErr.Code == codeSerialization)
}

// distinctRounds splits the indexes of ids into ordered rounds in which
// no id repeats.
func distinctRounds(ids []int64) [][]int {
	seen := make(map[int64]int, len(ids)) // id -> rounds it is in
	var rounds [][]int
	for i, id := range ids {
		r := seen[id]
		seen[id] = r + 1
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], i)
	}
	return rounds
}

const extendSQL = `UPDATE kiln_jobs j SET lease_expires_at = $1
 FROM unnest($2::bigint[], $3::int[], $4::bigint[], $5::int[]) AS l(id, attempt, token, idx)
 WHERE j.id = l.id AND j.attempt = l.attempt AND j.lease_token = l.token AND j.state = 'running'
 RETURNING l.idx`

// ExtendLeases extends still-held leases to until, in one statement.
func (d *Driver) ExtendLeases(ctx context.Context, leases []queue.Lease, until time.Time) ([]bool, error) {
	held := make([]bool, len(leases))
	if len(leases) == 0 {
		return held, nil
	}
	ids := make([]int64, len(leases))
	for i, l := range leases {
		ids[i] = l.ID
	}
	err := d.batched(ctx, ids, func(q querier, idx []int) error {
		jobIDs, attempts, tokens, pos := make([]int64, len(idx)), make([]int32, len(idx)), make([]int64, len(idx)), make([]int32, len(idx))
		for k, i := range idx {
			l := leases[i]
			jobIDs[k], attempts[k], tokens[k], pos[k] = l.ID, int32(l.Attempt), l.Token, int32(i)
		}
		rows, err := q.Query(ctx, extendSQL, until, jobIDs, attempts, tokens, pos)
		if err != nil {
			return err
		}
		return markPositions(rows, held)
	})
	if err != nil {
		return nil, d.explain("extend leases", err)
	}
	return held, nil
}

// CancelRequested returns which of ids are running with a cancellation
// request, by id.
func (d *Driver) CancelRequested(ctx context.Context, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := d.pool.Query(ctx, `SELECT id FROM kiln_jobs
	 WHERE cancel_requested AND state = 'running' AND id = ANY($1::bigint[]) ORDER BY id`, ids)
	if err != nil {
		return nil, d.explain("read cancellation requests", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, d.explain("read cancellation requests", err)
	}
	return out, nil
}

// SetProgress stores a running attempt's progress, or returns
// queue.ErrLeaseLost.
func (d *Driver) SetProgress(ctx context.Context, l queue.Lease, percent int, message string) error {
	tag, err := d.pool.Exec(ctx, `UPDATE kiln_jobs SET progress = $1, progress_message = $2
	 WHERE id = $3 AND attempt = $4 AND lease_token = $5 AND state = 'running'`, percent, message, l.ID, l.Attempt, l.Token)
	if err != nil {
		return d.explain("update the job", err)
	}
	if tag.RowsAffected() == 0 {
		return queue.ErrLeaseLost
	}
	return nil
}

// ExpiredLeases returns running jobs whose lease expired before now.
func (d *Driver) ExpiredLeases(ctx context.Context, now time.Time, limit int) ([]*queue.Job, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+jobCols+` FROM kiln_jobs j
	 WHERE j.state = 'running' AND j.lease_expires_at < $1 ORDER BY j.lease_expires_at LIMIT $2`, now, limit)
	if err != nil {
		return nil, d.explain("find expired leases", err)
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return nil, d.explain("find expired leases", err)
	}
	return jobs, nil
}

// inTx runs fn in a transaction of the pool.
func (d *Driver) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, d.pool, fn)
}

// CancelJob cancels a waiting job or flags a running one, in tx (see
// [Driver.InsertMany]) or a transaction of its own when tx is nil.
func (d *Driver) CancelJob(ctx context.Context, tx any, id int64, now time.Time) (*queue.Job, bool, error) {
	var out *queue.Job
	changed := false
	err := d.withTx(ctx, tx, func(t txq) error {
		j, err := d.lockJob(ctx, t, id)
		if err != nil {
			return err
		}
		var q string
		var args []any
		switch j.State {
		case queue.StateAvailable, queue.StateScheduled, queue.StateRetryable:
			e, err := json.Marshal(queue.AttemptError{Attempt: j.Attempt, At: now.UTC(), Error: "cancelled by request"})
			if err != nil {
				return err
			}
			q = `UPDATE kiln_jobs j SET state = 'cancelled', finalized_at = $2,
			 errors = coalesce(j.errors, '[]'::jsonb) || jsonb_build_array($3::text::jsonb)
			 WHERE j.id = $1 RETURNING ` + jobCols
			args = []any{id, now, string(e)}
			changed = true
		case queue.StateRunning:
			q = `UPDATE kiln_jobs j SET cancel_requested = true WHERE j.id = $1 RETURNING ` + jobCols
			args = []any{id}
		default:
			out = j
			return nil
		}
		out, err = t.job(ctx, q, args...)
		if err != nil {
			return d.explain("update the job", err)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, changed, nil
}

// RetryJob makes a job that is not running available now, and notifies
// the workers of its queue, in tx (see [Driver.InsertMany]) or a
// transaction of its own when tx is nil.
func (d *Driver) RetryJob(ctx context.Context, tx any, id int64, now time.Time) (*queue.Job, error) {
	var out *queue.Job
	err := d.withTx(ctx, tx, func(t txq) error {
		j, err := d.lockJob(ctx, t, id)
		if err != nil {
			return err
		}
		if j.State == queue.StateRunning {
			return fmt.Errorf("%w: it is running", queue.ErrWrongState)
		}
		out, err = t.job(ctx, `UPDATE kiln_jobs j SET state = 'available', run_at = $2, finalized_at = NULL,
		 cancel_requested = false, progress = 0, progress_message = NULL,
		 max_attempts = greatest(j.max_attempts, j.attempt + 1)
		 WHERE j.id = $1 RETURNING `+jobCols, id, now)
		if err != nil {
			return d.explain("update the job", err)
		}
		if err := t.exec(ctx, `SELECT pg_notify($1, $2)`, d.channel, out.Queue); err != nil {
			return d.explain("notify the job's queue", err)
		}
		return nil
	})
	return out, err
}

// withTx runs fn in tx, a caller's pgx.Tx or *sql.Tx, or in a transaction
// of the pool when tx is nil.
func (d *Driver) withTx(ctx context.Context, tx any, fn func(t txq) error) error {
	switch t := tx.(type) {
	case nil:
		return d.inTx(ctx, func(t pgx.Tx) error { return fn(pgxTxq{t}) })
	case pgx.Tx:
		return fn(pgxTxq{t})
	case *sql.Tx:
		return fn(sqlTxq{t})
	default:
		return fmt.Errorf("%w: the postgres driver takes a pgx.Tx from its Pool() or a *sql.Tx from its DB(), got %T", queue.ErrInvalid, tx)
	}
}

// lockJob reads job id in t and locks its row until t ends.
func (d *Driver) lockJob(ctx context.Context, t txq, id int64) (*queue.Job, error) {
	j, err := t.job(ctx, `SELECT `+jobCols+` FROM kiln_jobs j WHERE j.id = $1 FOR UPDATE`, id)
	if err != nil {
		return nil, d.explain("lock the job", err)
	}
	if j == nil {
		return nil, queue.ErrNotFound
	}
	return j, nil
}

// DeleteJob deletes a job that is not running and returns it as it was.
func (d *Driver) DeleteJob(ctx context.Context, id int64) (*queue.Job, error) {
	var out *queue.Job
	err := d.withTx(ctx, nil, func(t txq) error {
		j, err := d.lockJob(ctx, t, id)
		if err != nil {
			return err
		}
		if j.State == queue.StateRunning {
			return fmt.Errorf("%w: it is running; cancel it first", queue.ErrWrongState)
		}
		if err := t.exec(ctx, `DELETE FROM kiln_jobs WHERE id = $1`, id); err != nil {
			return d.explain("delete the job", err)
		}
		out = j
		return nil
	})
	return out, err
}

// promoteSQL makes due jobs available and notifies their queues, in one
// statement; jobs another promoter holds are skipped.
var promoteSQL = `WITH due AS (
   SELECT id FROM kiln_jobs WHERE state IN ('scheduled', 'retryable') AND run_at <= $1
   ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED),
 changed AS (
   UPDATE kiln_jobs j SET state = 'available' FROM due WHERE j.id = due.id
   RETURNING j.queue, j.state),
 ` + withNotify(3) + `
 SELECT DISTINCT changed.queue FROM changed, notified`

// Promote makes due scheduled and retryable jobs available, notifies
// their queues, and returns them.
func (d *Driver) Promote(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := d.pool.Query(ctx, promoteSQL, now, limit, d.channel)
	if err != nil {
		return nil, d.explain("promote jobs", err)
	}
	queues, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, d.explain("promote jobs", err)
	}
	slices.Sort(queues)
	return queues, nil
}

// NextRunAt returns the earliest RunAt of scheduled and retryable jobs.
func (d *Driver) NextRunAt(ctx context.Context) (time.Time, bool, error) {
	var t *time.Time
	if err := d.pool.QueryRow(ctx, `SELECT min(run_at) FROM kiln_jobs WHERE state IN ('scheduled', 'retryable')`).Scan(&t); err != nil {
		return time.Time{}, false, d.explain("find the next scheduled job", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return t.UTC(), true, nil
}

// Prune deletes up to p.Limit finished jobs past their cut-offs.
func (d *Driver) Prune(ctx context.Context, p queue.PruneParams) (int, error) {
	tag, err := d.pool.Exec(ctx, `DELETE FROM kiln_jobs WHERE id IN (
	   SELECT id FROM kiln_jobs
	   WHERE finalized_at IS NOT NULL AND (
	     (state = 'completed' AND finalized_at < $1) OR
	     (state = 'failed' AND finalized_at < $2) OR
	     (state = 'cancelled' AND finalized_at < $3))
	   LIMIT $4 FOR UPDATE SKIP LOCKED)`,
		ts(p.CompletedBefore), ts(p.FailedBefore), ts(p.CancelledBefore), p.Limit)
	if err != nil {
		return 0, d.explain("prune jobs", err)
	}
	return int(tag.RowsAffected()), nil
}

// QueueStats returns per-queue counts by state, and paused queues.
func (d *Driver) QueueStats(ctx context.Context, now time.Time) ([]queue.QueueStats, error) {
	rows, err := d.pool.Query(ctx, `SELECT queue, state, count(*), min(run_at) FROM kiln_jobs GROUP BY queue, state`)
	if err != nil {
		return nil, d.explain("queue stats", err)
	}
	defer rows.Close()
	var b stats.Builder
	for rows.Next() {
		var name, state string
		var n int64
		var minRun time.Time
		if err := rows.Scan(&name, &state, &n, &minRun); err != nil {
			return nil, d.explain("queue stats", err)
		}
		b.Add(name, state, n, minRun)
	}
	if err := rows.Err(); err != nil {
		return nil, d.explain("queue stats", err)
	}
	paused, err := d.PausedQueues(ctx)
	if err != nil {
		return nil, err
	}
	b.Paused(paused)
	return b.Result(), nil
}

// SetQueuePaused pauses or resumes a queue for every client.
func (d *Driver) SetQueuePaused(ctx context.Context, name string, paused bool, now time.Time) error {
	var pausedAt pgtype.Timestamptz
	if paused {
		pausedAt = ts(now)
	}
	_, err := d.pool.Exec(ctx, `INSERT INTO kiln_queues (name, paused_at, updated_at) VALUES ($1, $2, $3)
	 ON CONFLICT (name) DO UPDATE SET paused_at = excluded.paused_at, updated_at = excluded.updated_at`, name, pausedAt, now)
	if err != nil {
		return d.explain("pause queue "+name, err)
	}
	return nil
}

// PausedQueues returns the paused queue names.
func (d *Driver) PausedQueues(ctx context.Context) ([]string, error) {
	rows, err := d.pool.Query(ctx, `SELECT name FROM kiln_queues WHERE paused_at IS NOT NULL ORDER BY name`)
	if err != nil {
		return nil, d.explain("read paused queues", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, d.explain("read paused queues", err)
	}
	return out, nil
}

// TryLead takes or renews the named leadership for id until now+ttl if
// nobody else holds an unexpired lease, in one statement.
func (d *Driver) TryLead(ctx context.Context, name, id string, now time.Time, ttl time.Duration) (bool, error) {
	var leader string
	err := d.pool.QueryRow(ctx, `INSERT INTO kiln_leaders AS l (name, leader_id, expires_at) VALUES ($1, $2, $3)
	 ON CONFLICT (name) DO UPDATE SET leader_id = excluded.leader_id, expires_at = excluded.expires_at
	 WHERE l.leader_id = excluded.leader_id OR l.expires_at < $4
	 RETURNING l.leader_id`, name, id, now.Add(ttl), now).Scan(&leader)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // held by another, unexpired
	}
	if err != nil {
		return false, d.explain("elect leader", err)
	}
	return leader == id, nil
}

// Resign gives up the named leadership if id holds it.
func (d *Driver) Resign(ctx context.Context, name, id string) error {
	if _, err := d.pool.Exec(ctx, `DELETE FROM kiln_leaders WHERE name = $1 AND leader_id = $2`, name, id); err != nil {
		return d.explain("resign leadership", err)
	}
	return nil
}

var _ queue.Driver = (*Driver)(nil)

// markPositions sets out[i] for every position i the rows return: the
// outcomes or leases a batched statement applied.
func markPositions(rows pgx.Rows, out []bool) error {
	defer rows.Close()
	for rows.Next() {
		var i int32
		if err := rows.Scan(&i); err != nil {
			return err
		}
		out[i] = true
	}
	return rows.Err()
}
