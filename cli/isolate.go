package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kilnhq/kiln/internal/supervise"
	"github.com/kilnhq/kiln/queue"
)

// isolateFlags are serve's settings for working some queues in a child
// kiln worker process.
type isolateFlags struct {
	queues string
	nice   int
}

func (f *isolateFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.queues, "isolate-queues", "", "queues (of --queues) to work in a kiln worker process that serve starts, supervises and runs at a lower CPU priority, so that CPU-heavy jobs cannot slow the API: images,media")
	fl.IntVar(&f.nice, "isolate-nice", 10, "nice value (0-19) of the --isolate-queues process, on Linux")
}

// split checks the flags against the queues and returns the queues serve
// works itself and those the child works (none: no child).
func (f *isolateFlags) split(qs map[string]queue.QueueConfig) (own, isolated map[string]queue.QueueConfig, err error) {
	if f.nice < 0 || f.nice > 19 {
		return nil, nil, usagef("--isolate-nice must be from 0 to 19, got %d", f.nice)
	}
	own = map[string]queue.QueueConfig{}
	for n, q := range qs {
		own[n] = q
	}
	for _, name := range strings.Split(f.queues, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		q, ok := qs[name]
		if !ok {
			return nil, nil, usagef("--isolate-queues: %q is not one of --queues (%s)", name, queueList(qs))
		}
		if isolated == nil {
			isolated = map[string]queue.QueueConfig{}
		}
		isolated[name] = q
		delete(own, name)
	}
	if len(own) == 0 {
		return nil, nil, usagef("--isolate-queues takes every queue of --queues, leaving serve none: keep one, or run kiln worker for them")
	}
	return own, isolated, nil
}

// queueList formats queues as --queues does: name=workers,… in name order.
func queueList(qs map[string]queue.QueueConfig) string {
	out := make([]string, 0, len(qs))
	for n, q := range qs {
		out = append(out, fmt.Sprintf("%s=%d", n, q.MaxWorkers))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// serveOnlyFlags are serve's flags that kiln worker does not have.
var serveOnlyFlags = map[string]bool{"addr": true, "drain-delay": true, "isolate-queues": true, "isolate-nice": true}

// isolatedWorker returns the supervisor of the child kiln worker that
// works the isolated queues: it gets the flags given to serve that worker
// has (the environment it inherits), the same database, those queues, no
// admin listener, and an ID of its own when serve has one.
func isolatedWorker(cmd *cobra.Command, g *globals, f *engineFlags, isolated map[string]queue.QueueConfig, nice int, log *slog.Logger) (*supervise.Supervisor, io.Closer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("--isolate-queues: find this program to start a worker: %w", err)
	}
	args := []string{"worker"}
	pass := func(fl *pflag.Flag) {
		if !fl.Changed || serveOnlyFlags[fl.Name] {
			return
		}
		switch fl.Name {
		case "db", "data-dir", "queues", "admin-addr", "id":
			return // set below
		}
		args = append(args, "--"+fl.Name+"="+fl.Value.String())
	}
	cmd.Flags().Visit(pass)
	cmd.InheritedFlags().Visit(pass)
	args = append(args, "--db="+g.resolveDB(), "--queues="+queueList(isolated), "--admin-addr=off", "--supervised")
	if f.id != "" {
		args = append(args, "--id="+f.id+"-isolated")
	}
	// The child stops when its stdin ends: when serve exits, however it
	// exits, the kernel closes this pipe's other end.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("--isolate-queues: %w", err)
	}
	sup, err := supervise.New(supervise.Options{
		Name: "isolated worker (" + queueList(isolated) + ")", Path: exe, Args: args,
		Stdin: r, Stdout: g.stdout, Stderr: g.stderr, Nice: nice,
		StopTimeout: f.shutdownTimeout + shutdownGrace, Logger: log,
	})
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	return sup, closers{r, w}, nil
}

// shutdownGrace is how long serve waits for the isolated worker beyond
// the shutdown timeout it gives the worker's jobs.
const shutdownGrace = 5 * time.Second

type closers []io.Closer

func (c closers) Close() error {
	var errs []error
	for _, x := range c {
		errs = append(errs, x.Close())
	}
	return errors.Join(errs...)
}

// runIsolated runs sup while serve runs: until ctx is done, or until sup
// fails to start the worker, which cancels serve with that error.
func runIsolated(ctx context.Context, sup *supervise.Supervisor, serve func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() {
		err := sup.Run(ctx)
		if err != nil {
			cancel(err)
		}
		done <- err
	}()
	err := serve(ctx)
	cancel(nil)
	return errors.Join(err, <-done)
}

// exitOnStdinEOF cancels the returned context when stdin ends (see
// isolatedWorker).
func exitOnStdinEOF(ctx context.Context, stdin io.Reader, log *slog.Logger) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		log.Info("stdin closed: the process that started this worker is gone; shutting down")
		cancel()
	}()
	return ctx
}
