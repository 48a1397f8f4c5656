package queue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// ResizeArgs are the arguments of an example job kind.
type ResizeArgs struct {
	Image string `json:"image"`
	Width int    `json:"width"`
}

// Embed the engine in a Go program: register a kind, start a client,
// insert a job and wait for its result.
func Example() {
	dir, _ := os.MkdirTemp("", "kiln-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	driver, err := sqlitedriver.Open(filepath.Join(dir, "kiln.db"), sqlitedriver.Options{})
	if err != nil {
		panic(err)
	}
	defer driver.Close()
	if err := driver.Migrate(ctx); err != nil {
		panic(err)
	}

	workers := queue.NewWorkers()
	workers.Handle("image.resize", queue.Typed(func(ctx context.Context, job *queue.Job, a ResizeArgs) error {
		_ = job.SetProgress(ctx, 50, "resizing")
		return job.SetResult(map[string]any{"image": a.Image, "width": a.Width})
	}), queue.WithRetry(queue.RetryPolicy{MaxAttempts: 5}), queue.WithTimeout(time.Minute))

	client, err := queue.New(queue.Config{
		Driver:  driver,
		Workers: workers,
		Queues:  map[string]queue.QueueConfig{queue.DefaultQueue: {MaxWorkers: 10}},
	})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}
	defer client.Stop(ctx)

	args, _ := json.Marshal(ResizeArgs{Image: "cat.png", Width: 128})
	res, err := client.Insert(ctx, queue.InsertParams{Kind: "image.resize", Args: args})
	if err != nil {
		panic(err)
	}
	for {
		job, err := client.Get(ctx, res.Job.ID)
		if err != nil {
			panic(err)
		}
		if job.State.Final() {
			fmt.Println(job.State, string(job.Result))
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Output: completed {"image":"cat.png","width":128}
}
