package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

type ctxKey struct{}

// TestInsertAndWorkHooks: InsertHook sees the inserting context and may
// change the stored job without touching the caller's parameters;
// WorkHook wraps the handler and its context reaches the handler.
func TestInsertAndWorkHooks(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := sqlitedriver.Open(filepath.Join(t.TempDir(), "kiln.db"), sqlitedriver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 1)
	w := queue.NewWorkers()
	w.Handle("hooked", queue.HandlerFunc(func(ctx context.Context, job *queue.Job) error {
		v, _ := ctx.Value(ctxKey{}).(string)
		seen <- v + "|" + string(job.Metadata)
		return errors.New("handler error")
	}), queue.WithRetry(queue.RetryPolicy{MaxAttempts: 1}))
	var wrapped error
	c, err := queue.New(queue.Config{
		Driver: d, Workers: w, Queues: map[string]queue.QueueConfig{"default": {MaxWorkers: 1}},
		InsertHook: func(ctx context.Context, p *queue.InsertParams) {
			if v, ok := ctx.Value(ctxKey{}).(string); ok {
				p.Opts.Metadata = json.RawMessage(`{"from":"` + v + `"}`)
			}
		},
		WorkHook: func(ctx context.Context, job *queue.Job, work func(context.Context) error) error {
			wrapped = work(context.WithValue(ctx, ctxKey{}, "work-"+job.Kind))
			return wrapped
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	params := queue.InsertParams{Kind: "hooked"}
	res, err := c.Insert(context.WithValue(ctx, ctxKey{}, "request-1"), params)
	if err != nil {
		t.Fatal(err)
	}
	if params.Opts.Metadata != nil {
		t.Errorf("the caller's params were changed: %s", params.Opts.Metadata)
	}
	if string(res.Job.Metadata) != `{"from":"request-1"}` {
		t.Errorf("stored metadata %s", res.Job.Metadata)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(context.Background())
	select {
	case got := <-seen:
		if got != `work-hooked|{"from":"request-1"}` {
			t.Errorf("handler saw %q", got)
		}
	case <-ctx.Done():
		t.Fatal("the job did not run")
	}
	for {
		j, err := c.Get(ctx, res.Job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == queue.StateFailed {
			if len(j.Errors) != 1 || j.Errors[0].Error != "handler error" || wrapped == nil {
				t.Errorf("the hook did not pass the handler's error on: %+v %v", j.Errors, wrapped)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the job did not fail")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
