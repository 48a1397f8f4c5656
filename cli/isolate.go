package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kilnhq/kiln/internal/admin"
	"github.com/kilnhq/kiln/internal/supervise"
	"github.com/kilnhq/kiln/queue"
)

// isolateFlags are serve's settings for working some queues in a child
// kiln worker process.
type isolateFlags struct {
	queues    string
	priority  string
	adminAddr string
	// From priority, by split.
	nice int
	idle bool
}

func (f *isolateFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.queues, "isolate-queues", "", "queues (of --queues) to work in a kiln worker process that serve starts, supervises and runs at a lower CPU priority, so that CPU-heavy jobs cannot slow the API: images,media")
	fl.StringVar(&f.priority, "isolate-priority", "idle", `CPU priority of the --isolate-queues process, on Linux: "idle" (SCHED_IDLE: the API's threads take a CPU from it at once) or a nice value, 0 to 19`)
	fl.StringVar(&f.adminAddr, "isolate-admin-addr", "off", "admin listener (pprof, metrics of its jobs) of the --isolate-queues process; like --admin-addr")
}

// checkAdmin checks --isolate-admin-addr with the admin token the child
// gets, and that it does not take serve's own admin address.
func (f *isolateFlags) checkAdmin(serveAdmin, token string) error {
	if f.adminAddr == "" || f.adminAddr == "off" {
		f.adminAddr = "off"
		return nil
	}
	if _, err := admin.New(admin.Options{Addr: f.adminAddr, Token: token}); err != nil {
		return usagef("--isolate-admin-addr: %v", err)
	}
	if f.adminAddr == serveAdmin && !strings.HasSuffix(f.adminAddr, ":0") {
		return usagef("--isolate-admin-addr %s is serve's --admin-addr too: give the worker another", f.adminAddr)
	}
	return nil
}

// split checks the flags against the queues and returns the queues serve
// works itself and those the child works (none: no child).
func (f *isolateFlags) split(qs map[string]queue.QueueConfig) (own, isolated map[string]queue.QueueConfig, err error) {
	if strings.TrimSpace(strings.ReplaceAll(f.queues, ",", "")) == "" {
		return qs, nil, nil
	}
	if p := strings.TrimSpace(f.priority); p == "idle" {
		f.idle = true
	} else if n, err := strconv.Atoi(p); err == nil && n >= 0 && n <= 19 {
		f.nice = n
	} else {
		return nil, nil, usagef(`--isolate-priority must be "idle" or a nice value from 0 to 19, got %q`, f.priority)
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
var serveOnlyFlags = map[string]bool{"addr": true, "drain-delay": true, "isolate-queues": true, "isolate-priority": true, "isolate-admin-addr": true}

// isolatedWorker returns the supervisor of the child kiln worker that
// works the isolated queues: it gets the flags given to serve that worker
// has, serve's environment with the same database (KILN_DB), those queues,
// --isolate-admin-addr as its admin listener, and an ID of its own when
// serve has one.
func isolatedWorker(cmd *cobra.Command, g *globals, f *engineFlags, isolated map[string]queue.QueueConfig, iso *isolateFlags, log *slog.Logger) (*supervise.Supervisor, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--isolate-queues: find this program to start a worker: %w", err)
	}
	argv0 := exe
	if runtime.GOOS == "linux" {
		// The binary serve runs, even if an upgrade has replaced the file
		// since: a restarted worker never runs (nor migrates the database
		// for) another version than serve's.
		exe = "/proc/self/exe"
	}
	args := []string{"worker"}
	seen := map[string]bool{}
	pass := func(fl *pflag.Flag) {
		if !fl.Changed || serveOnlyFlags[fl.Name] || seen[fl.Name] {
			return
		}
		seen[fl.Name] = true
		switch fl.Name {
		case "db", "data-dir", "queues", "admin-addr", "id":
			return // set below, or in the environment
		}
		args = append(args, "--"+fl.Name+"="+fl.Value.String())
	}
	cmd.Flags().Visit(pass)
	cmd.InheritedFlags().Visit(pass)
	// The database goes in the environment, where serve's own may have
	// come from, rather than on a command line anyone can list.
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KILN_DB=") {
			env = append(env, kv)
		}
	}
	env = append(env, "KILN_DB="+g.resolveDB())
	args = append(args, "--queues="+queueList(isolated), "--admin-addr="+iso.adminAddr, "--supervised")
	if f.id != "" {
		args = append(args, "--id="+f.id+"-isolated")
	}
	shown := append([]string{}, args...)
	for i, a := range shown {
		if name, _, ok := strings.Cut(a, "="); ok && strings.HasSuffix(name, "-token") {
			shown[i] = name + "=xxxxx"
		}
	}
	log.Info("isolated queues are worked by a kiln worker that serve supervises", "queues", queueList(isolated), "priority", iso.priority,
		"command", "kiln "+strings.Join(shown, " "), "database", redact(g.resolveDB()))
	return supervise.New(supervise.Options{
		Name: "isolated worker (" + queueList(isolated) + ")", Path: exe, Argv0: argv0, Args: args, Env: env,
		// The worker ignores signals and stops when its stdin ends, so
		// that a signal to the whole process group (Ctrl-C, a service
		// manager) does not cut its shutdown short; the pipe also closes
		// when serve dies, however it dies.
		StopByStdin: true,
		Stdout:      g.stdout, Stderr: g.stderr, Nice: iso.nice, Idle: iso.idle,
		StopTimeout: f.shutdownTimeout + shutdownGrace, Logger: log,
		// A usage error would recur at every restart: serve stops instead.
		FatalExitCodes: []int{exitUsage},
	})
}

// shutdownGrace is how long serve waits for the isolated worker beyond
// the shutdown timeout it gives the worker's jobs: the worker then still
// writes outcomes, resigns leadership and flushes traces.
const shutdownGrace = 15 * time.Second

// runAlongside runs sup while run runs (both get ctx, so both start
// shutting down at once), cancels run if sup fails, and returns once both
// have returned.
func runAlongside(ctx context.Context, sup *supervise.Supervisor, run func(context.Context) error) error {
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
	err := run(ctx)
	cancel(nil)
	return errors.Join(err, <-done)
}

// exitOnStdinEOF cancels the returned context when stdin ends (see
// isolatedWorker).
func exitOnStdinEOF(ctx context.Context, stdin io.Reader, log *slog.Logger) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		log.Info("stdin closed: serve is stopping this worker, or is gone; shutting down")
		cancel()
	}()
	return ctx
}
