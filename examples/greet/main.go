// Command greet is kiln with one job kind of its own, greet, registered
// beside the built-in ones; the README walks through it.
package main

import (
	"context"
	"os"

	"github.com/kilnhq/kiln/cli"
	"github.com/kilnhq/kiln/queue"
)

type GreetArgs struct {
	Name string `json:"name"`
}

func greet(ctx context.Context, job *queue.Job, a GreetArgs) error {
	job.Logger().Info("greeting", "name", a.Name)
	return job.SetResult(map[string]string{"greeting": "hello, " + a.Name})
}

func main() {
	os.Exit(cli.Main(cli.WithKinds(func(w *queue.Workers) {
		w.Handle("greet", queue.Typed(greet))
	})))
}
