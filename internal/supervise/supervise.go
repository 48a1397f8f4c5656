// Package supervise runs a child process for as long as its parent wants
// it: it starts the child at a lowered CPU priority, restarts it with a
// growing delay when it exits on its own, and stops it (SIGTERM, then
// SIGKILL after a timeout) when told to.
//
// kiln serve uses it to work CPU-heavy queues in a kiln worker process of
// its own: that process has its own Go runtime (its own scheduler,
// garbage collector and heap) and runs at a lower priority, so the kernel
// gives the API's threads the CPUs first and nothing the heavy work does
// inside its runtime can delay a request.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kilnhq/kiln/internal/defaults"
)

// Options configure a Supervisor.
type Options struct {
	// Name names the child in log lines ("isolated worker").
	Name string
	// Path and Args are the program and its arguments (Args without the
	// program name); Argv0, if set, is the name the child is given in its
	// argument list, which ps shows (default Path).
	Path  string
	Args  []string
	Argv0 string
	// Env is the child's environment (nil: the parent's).
	Env []string
	// StopByStdin stops the child by closing its standard input, a pipe
	// whose other end only the supervisor holds, instead of sending it
	// SIGTERM. The child must shut down when its stdin ends; it may then
	// ignore signals, so that a signal sent to the whole process group
	// (Ctrl-C in a terminal, a service manager stopping the group) does
	// not cut its graceful shutdown short. The pipe also closes when the
	// parent dies, however it dies.
	StopByStdin bool
	// Stdout and Stderr receive the child's output (nil: discarded).
	Stdout, Stderr io.Writer
	// Nice is the child's nice value, 0 to 19 (Linux only).
	Nice int
	// Idle runs the child under the SCHED_IDLE policy (Linux only): the
	// kernel gives it a CPU when no other task wants one, and a waking
	// task of any other policy takes the CPU from it at once, where a
	// high nice value only shrinks its share. It is not starved outright
	// (the kernel still gives it a small weight), so a lock it holds is
	// released even on busy CPUs. Nice is ignored with it.
	Idle bool
	// StopTimeout is how long Run waits after SIGTERM before it kills
	// the child (default 30s).
	StopTimeout time.Duration
	// MinRestartDelay and MaxRestartDelay bound the delay before a child
	// that exited on its own is started again: it starts at the minimum
	// (default 1s) and doubles at each exit, up to the maximum (default
	// 1m), and goes back to the minimum once a child has run for
	// StableAfter (default 1m).
	MinRestartDelay, MaxRestartDelay, StableAfter time.Duration
	// FatalExitCodes are exit codes after which the child is not started
	// again: Run returns an error instead (a usage error, say, which
	// every restart would repeat).
	FatalExitCodes []int
	// Logger receives starts, exits and restarts (nil: discarded).
	Logger *slog.Logger
	// Started, if set, is called with each child's process ID once it
	// runs (for tests).
	Started func(pid int)
}

// Supervisor runs one child process; see the package documentation.
type Supervisor struct {
	o Options
}

// New checks o and returns a Supervisor; Run starts the child.
func New(o Options) (*Supervisor, error) {
	if o.Path == "" {
		return nil, errors.New("supervise: no program to run")
	}
	if o.Nice < 0 || o.Nice > 19 {
		return nil, fmt.Errorf("supervise: nice value %d out of 0..19", o.Nice)
	}
	if o.Name == "" {
		o.Name = "child process"
	}
	defaults.Positive(&o.StopTimeout, 30*time.Second)
	defaults.Positive(&o.MinRestartDelay, time.Second)
	if o.MaxRestartDelay < o.MinRestartDelay {
		o.MaxRestartDelay = max(time.Minute, o.MinRestartDelay)
	}
	defaults.Positive(&o.StableAfter, time.Minute)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{o: o}, nil
}

// Run keeps the child running until ctx is done, then stops it and
// returns once it has exited. It returns an error when the child cannot
// be started the first time (the program is missing, say), or exits with
// one of FatalExitCodes; a child that exits otherwise, or cannot be
// started again later, is logged and started again after a delay.
func (s *Supervisor) Run(ctx context.Context) error {
	log := s.o.Logger.With("process", s.o.Name)
	delay := s.o.MinRestartDelay
	for first := true; ; first = false {
		c, err := s.start()
		if err != nil && first {
			return fmt.Errorf("supervise: start %s: %w", s.o.Name, err)
		}
		if err == nil {
			started := time.Now()
			log.Info("started", "pid", c.cmd.Process.Pid, "priority", s.priority()) // not the arguments: they may hold secrets
			if s.o.Started != nil {
				s.o.Started(c.cmd.Process.Pid)
			}
			exited := make(chan error, 1)
			go func() { exited <- c.cmd.Wait() }()
			select {
			case <-ctx.Done():
				s.stop(c, exited, log)
				return nil
			case err = <-exited:
				c.closeStdin()
			}
			if ctx.Err() != nil {
				// Stopped by the same signal as the parent: no restart.
				log.Info("exited while stopping", "status", exitErr(err))
				return nil
			}
			code := c.cmd.ProcessState.ExitCode()
			if slices.Contains(s.o.FatalExitCodes, code) {
				log.Error("exited with a status that a restart would repeat; not starting it again", "status", exitErr(err))
				return fmt.Errorf("supervise: %s: %s", s.o.Name, exitErr(err))
			}
			if time.Since(started) >= s.o.StableAfter {
				delay = s.o.MinRestartDelay
			}
			log.Error("exited; starting it again", "err", exitErr(err), "ran", time.Since(started).Round(time.Millisecond).String(), "restart_in", delay.String())
		} else {
			log.Error("cannot start it again; trying later", "err", err, "restart_in", delay.String())
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, s.o.MaxRestartDelay)
	}
}

// child is a started child process and the supervisor's end of its
// stdin pipe, if any.
type child struct {
	cmd   *exec.Cmd
	stdin *os.File
}

func (c *child) closeStdin() {
	if c.stdin != nil {
		_ = c.stdin.Close()
	}
}

// stop asks the child to stop (closing its stdin with StopByStdin, else
// SIGTERM), kills it if it is still there after StopTimeout, and returns
// once it has exited.
func (s *Supervisor) stop(c *child, exited <-chan error, log *slog.Logger) {
	log.Info("stopping", "pid", c.cmd.Process.Pid, "timeout", s.o.StopTimeout.String())
	if s.o.StopByStdin {
		c.closeStdin()
	} else {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(s.o.StopTimeout)
	defer t.Stop()
	select {
	case err := <-exited:
		log.Info("stopped", "status", exitErr(err))
	case <-t.C:
		_ = c.cmd.Process.Kill()
		err := <-exited
		log.Warn("killed: it did not stop in time", "status", exitErr(err))
	}
	c.closeStdin()
}

// start starts the child at the configured priority.
func (s *Supervisor) start() (*child, error) {
	cmd := exec.Command(s.o.Path, s.o.Args...)
	if s.o.Argv0 != "" {
		cmd.Args[0] = s.o.Argv0
	}
	cmd.Env = s.o.Env
	cmd.Stdout, cmd.Stderr = s.o.Stdout, s.o.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = io.Discard
	}
	if cmd.Stderr == nil {
		cmd.Stderr = io.Discard
	}
	c := &child{cmd: cmd}
	if s.o.StopByStdin {
		r, w, err := os.Pipe() // close-on-exec: only the child's fd 0 is r
		if err != nil {
			return nil, err
		}
		cmd.Stdin, c.stdin = r, w
		defer r.Close() // the child has its own copy once started
	}
	if err := s.startAtPriority(cmd); err != nil {
		c.closeStdin()
		return nil, err
	}
	return c, nil
}

// startAtPriority starts cmd, lowering the priority of the child alone.
func (s *Supervisor) startAtPriority(cmd *exec.Cmd) error {
	if s.o.Nice == 0 && !s.o.Idle {
		return cmd.Start()
	}
	// A child inherits the nice value and policy of the thread that forks
	// it: fork from a thread of our own, lowered, which ends with its
	// goroutine (the goroutine never unlocks it).
	lowerAndStart := func() error {
		if err := lowerThread(s.o.Nice, s.o.Idle); err != nil {
			s.o.Logger.Warn("cannot lower the priority of "+s.o.Name+"; it runs at the parent's", "err", err)
		}
		return cmd.Start()
	}
	result := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if !onMainThread() {
			result <- lowerAndStart()
			return
		}
		// A goroutine that ends locked to the main thread does not end
		// the thread: the runtime parks it for good, and it would stay
		// lowered (and the main thread is where the kernel delivers
		// signals). Hold the main thread here, so that the goroutine
		// below gets another, and give it back afterwards.
		inner := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			inner <- lowerAndStart()
		}()
		err := <-inner
		runtime.UnlockOSThread()
		result <- err
	}()
	return <-result
}

// priority describes the child's priority for log lines.
func (s *Supervisor) priority() string {
	if s.o.Idle {
		return "SCHED_IDLE"
	}
	return fmt.Sprintf("nice %d", s.o.Nice)
}

// exitErr describes how a child ended.
func exitErr(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// ProcessNice returns the nice value of the main thread of process pid
// (Linux only; for tests and diagnostics).
func ProcessNice(pid int) (int, error) {
	return statField(pid, 16)
}

// ProcessPolicy returns the scheduling policy of the main thread of
// process pid: 0 for SCHED_OTHER, 5 for SCHED_IDLE (Linux only; for tests
// and diagnostics).
func ProcessPolicy(pid int) (int, error) {
	return statField(pid, 38)
}

// statField returns field i, counted from 0 after the command name, of
// /proc/<pid>/stat.
func statField(pid, i int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return fieldFromStat(b, i)
}

// fieldFromStat returns field i of the fields after the command name
// (state is field 0, nice 16, policy 38) in the contents of a Linux stat
// file.
func fieldFromStat(b []byte, i int) (int, error) {
	// The command name is in parentheses and may hold spaces and
	// parentheses: the fields start after the last ')'.
	j := strings.LastIndexByte(string(b), ')')
	if j < 0 {
		return 0, errors.New("unexpected stat contents")
	}
	f := strings.Fields(string(b[j+1:]))
	if len(f) <= i {
		return 0, errors.New("unexpected stat contents")
	}
	n, err := strconv.Atoi(f[i])
	if err != nil {
		return 0, fmt.Errorf("field %d of stat: %w", i, err)
	}
	return n, nil
}
