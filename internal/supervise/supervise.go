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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options configure a Supervisor.
type Options struct {
	// Name names the child in log lines ("isolated worker").
	Name string
	// Path and Args are the program and its arguments (Args without the
	// program name).
	Path string
	Args []string
	// Env is the child's environment (nil: the parent's).
	Env []string
	// Stdin is the child's standard input (nil: none). An *os.File is
	// passed to the child as it is.
	Stdin io.Reader
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
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.MinRestartDelay <= 0 {
		o.MinRestartDelay = time.Second
	}
	if o.MaxRestartDelay < o.MinRestartDelay {
		o.MaxRestartDelay = max(time.Minute, o.MinRestartDelay)
	}
	if o.StableAfter <= 0 {
		o.StableAfter = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{o: o}, nil
}

// Run keeps the child running until ctx is done, then stops it and
// returns once it has exited. It returns an error only when the child
// cannot be started at all (the program is missing, say); a child that
// exits, whatever its status, is logged and started again.
func (s *Supervisor) Run(ctx context.Context) error {
	log := s.o.Logger.With("process", s.o.Name)
	delay := s.o.MinRestartDelay
	for {
		cmd, err := s.start()
		if err != nil {
			return fmt.Errorf("supervise: start %s: %w", s.o.Name, err)
		}
		started := time.Now()
		log.Info("started", "pid", cmd.Process.Pid, "priority", s.priority()) // not the arguments: they may hold secrets
		if s.o.Started != nil {
			s.o.Started(cmd.Process.Pid)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-ctx.Done():
			s.stop(cmd, exited, log)
			return nil
		case err := <-exited:
			if ctx.Err() != nil {
				// Stopped by the same signal as the parent (Ctrl-C
				// reaches the whole process group): no restart.
				log.Info("exited while stopping", "status", exitErr(err))
				return nil
			}
			ran := time.Since(started)
			if ran >= s.o.StableAfter {
				delay = s.o.MinRestartDelay
			}
			log.Error("exited; starting it again", "err", exitErr(err), "ran", ran.Round(time.Millisecond).String(), "restart_in", delay.String())
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
}

// stop sends SIGTERM, and SIGKILL if the child is still there after
// StopTimeout; it returns once the child has exited.
func (s *Supervisor) stop(cmd *exec.Cmd, exited <-chan error, log *slog.Logger) {
	log.Info("stopping", "pid", cmd.Process.Pid, "timeout", s.o.StopTimeout.String())
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(s.o.StopTimeout)
	defer t.Stop()
	select {
	case err := <-exited:
		log.Info("stopped", "status", exitErr(err))
	case <-t.C:
		_ = cmd.Process.Kill()
		err := <-exited
		log.Warn("killed: it did not stop in time", "status", exitErr(err))
	}
}

// start starts the child at the configured priority.
func (s *Supervisor) start() (*exec.Cmd, error) {
	cmd := exec.Command(s.o.Path, s.o.Args...)
	cmd.Env = s.o.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.o.Stdin, s.o.Stdout, s.o.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = io.Discard
	}
	if cmd.Stderr == nil {
		cmd.Stderr = io.Discard
	}
	if s.o.Nice == 0 && !s.o.Idle {
		return cmd, cmd.Start()
	}
	// A child inherits the nice value of the thread that forks it: fork
	// from a thread of our own, lowered, which ends with its goroutine.
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := lowerThread(s.o.Nice, s.o.Idle); err != nil {
			s.o.Logger.Warn("cannot lower the priority of "+s.o.Name+"; it runs at the parent's", "err", err)
		}
		done <- cmd.Start()
	}()
	return cmd, <-done
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
