// Package enqueue is what the features share to hand their heavy part to
// the job engine: enqueueing a job in the transaction that stores the
// record it works on, so that both exist or neither does; reading the
// job back once it may have been pruned; and checking the record id its
// arguments carry.
package enqueue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kilnhq/kiln/queue"
)

// Inserter inserts jobs in a caller's transaction; *queue.Client
// satisfies it.
type Inserter interface {
	InsertTx(ctx context.Context, tx any, ps ...queue.InsertParams) ([]queue.InsertResult, error)
}

// Getter reads a job; *queue.Client satisfies it.
type Getter interface {
	Get(ctx context.Context, id int64) (*queue.Job, error)
}

// Jobs is what a feature that enqueues work and shows its progress needs
// of the engine.
type Jobs interface {
	Inserter
	Getter
}

var _ Jobs = (*queue.Client)(nil)

// InTx enqueues a job of kind with args, encoded as JSON, in tx and
// returns its id.
func InTx(ctx context.Context, jobs Inserter, tx *sql.Tx, kind string, args any) (int64, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return 0, fmt.Errorf("encode %s args: %w", kind, err)
	}
	res, err := jobs.InsertTx(ctx, tx, queue.InsertParams{Kind: kind, Args: b})
	if err != nil {
		return 0, fmt.Errorf("enqueue %s job: %w", kind, err)
	}
	if len(res) != 1 || res[0].Job == nil {
		return 0, fmt.Errorf("enqueue %s job: the engine returned %d results", kind, len(res))
	}
	return res[0].Job.ID, nil
}

// Job returns job id, or nil when it no longer exists: finished jobs are
// pruned after a while, the records they worked on stay.
func Job(ctx context.Context, jobs Getter, id int64) (*queue.Job, error) {
	j, err := jobs.Get(ctx, id)
	if errors.Is(err, queue.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("job %d: %w", id, err)
	}
	return j, nil
}

// ID checks id, the record a job's arguments name in field: it must be
// positive.
func ID(field string, id int64) error {
	if id < 1 {
		return fmt.Errorf("%s must be a positive integer, got %d", field, id)
	}
	return nil
}

// Tracked is a record with the job that works on it; Job is nil once the
// job has been pruned.
type Tracked[T any] struct {
	Record T
	Job    *queue.Job
}

// Track returns rec with its job, jobID, read from jobs.
func Track[T any](ctx context.Context, jobs Getter, rec T, jobID int64) (Tracked[T], error) {
	j, err := Job(ctx, jobs, jobID)
	if err != nil {
		return Tracked[T]{}, err
	}
	return Tracked[T]{Record: rec, Job: j}, nil
}
