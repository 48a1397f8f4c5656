// Package cli is the kiln command: serve, worker, enqueue, jobs, token,
// migrate and bench. cmd/kiln is [Main] with kiln's built-in job kinds; a
// Go program that adds its own kinds calls [Main] with [WithKinds] and
// gets the same command, API and engine with its kinds registered
// beside the built-in ones:
//
//	func main() {
//		os.Exit(cli.Main(cli.WithKinds(func(w *queue.Workers) {
//			w.Handle("greet", queue.Typed(greet))
//		})))
//	}
//
// Run "kiln --help" for the commands. Every flag can also be set with an
// environment variable: KILN_ followed by the flag's name in upper case
// with dashes as underscores (--data-dir is KILN_DATA_DIR). A flag given on
// the command line wins over the environment.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kilnhq/kiln/queue"
)

// usageError marks errors in how kiln was called; they exit with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// globals are the flags every command takes.
type globals struct {
	db        string
	dataDir   string
	logLevel  string
	logFormat string
	stdout    io.Writer
	stderr    io.Writer
	// kinds are the extra kinds of WithKinds.
	kinds []func(*queue.Workers)
}

// Option adds to the kiln command.
type Option func(*options)

type options struct {
	kinds []func(*queue.Workers)
}

// WithKinds has register add job kinds to every engine the command
// starts (serve and worker) and to the kinds enqueue checks, beside the
// built-in ones. Registering a built-in kind's name again panics at
// start-up.
func WithKinds(register func(w *queue.Workers)) Option {
	return func(o *options) { o.kinds = append(o.kinds, register) }
}

// Main runs kiln with the process's arguments and standard streams,
// cancelling its context on SIGINT or SIGTERM, and returns the exit
// status for os.Exit: 0, 1 on failure, 2 for a usage error.
func Main(opts ...Option) int {
	var o options
	for _, fn := range opts {
		fn(&o)
	}
	return runMain(o)
}

// runMain is Main after its options; tests run it in a subprocess.
func runMain(o options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts a graceful shutdown, restore the
	// default handling so that a second one ends the process at once (its
	// jobs are rescued when their leases expire).
	go func() {
		<-ctx.Done()
		stop()
	}()
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr, o)
}

// run executes kiln with args and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, o options) int {
	g := &globals{stdout: stdout, stderr: stderr, kinds: o.kinds}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "kiln: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return 1
}

// exitUsage is the exit status of a usage error: a bad flag, argument or
// setting.
const exitUsage = 2

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "kiln",
		Short: "kiln: a backend with a durable job engine",
		Long: `kiln runs an HTTP backend whose heavy work goes to a durable job engine.

Data lives in an embedded SQLite database under --data-dir unless --db
names another database. Every flag can be set as KILN_<FLAG> in the
environment (--data-dir is KILN_DATA_DIR).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			// Check the log settings for every command, not only those
			// that log, so a typo is caught where it is made.
			_, err := g.logger()
			return err
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.db, "db", "", "database URL: sqlite:///path/kiln.db, a file path, or postgres://… (default: SQLite in --data-dir)")
	pf.StringVar(&g.dataDir, "data-dir", "./kiln-data", "directory for the embedded database and files")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newServeCmd(g), newWorkerCmd(g), newMigrateCmd(g), newEnqueueCmd(g), newTokenCmd(g),
		newJobsCmd(g), newBenchCmd(g),
	)
	strictArgs(root)
	return root
}

// strictArgs makes wrong positional arguments usage errors (exit 2)
// everywhere under cmd. A command that only groups subcommands ("kiln",
// "kiln jobs") would otherwise print its help and exit 0 when given an
// unknown subcommand, so that a typo such as "kiln jobs lsit" in a script
// looked like success.
func strictArgs(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		strictArgs(c)
	}
	if cmd.HasAvailableSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = unknownSubcommand
		cmd.SuggestionsMinimumDistance = 2
		cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		return
	}
	if orig := cmd.Args; orig != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := orig(c, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
}

// unknownSubcommand refuses any positional argument of a command that
// only groups subcommands, suggesting close names.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// applyEnv sets every flag of cmd that was not given on the command line
// from its KILN_ environment variable.
func applyEnv(cmd *cobra.Command) error {
	var firstErr error
	set := func(f *pflag.Flag) {
		if f.Changed || firstErr != nil {
			return
		}
		name := "KILN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if err := f.Value.Set(v); err != nil {
			firstErr = usagef("%s=%q: %v", name, v, err)
		}
	}
	cmd.Flags().VisitAll(set)
	cmd.InheritedFlags().VisitAll(set)
	return firstErr
}

// logger builds the process logger from the global flags.
func (g *globals) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(g.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", g.logFormat)
}
