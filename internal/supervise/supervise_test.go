package supervise

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child: with KILN_SUPERVISE_CHILD set it
// behaves as told, and writes what happens to KILN_SUPERVISE_LOG.
func TestMain(m *testing.M) {
	if mode := os.Getenv("KILN_SUPERVISE_CHILD"); mode != "" {
		runChild(mode, os.Getenv("KILN_SUPERVISE_LOG"))
		return
	}
	os.Exit(m.Run())
}

func runChild(mode, logPath string) {
	note := func(s string) {
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			_, _ = f.WriteString(s + "\n")
			_ = f.Close()
		}
	}
	// Signal handling is in place before "start" is written, which is
	// when the tests start sending signals.
	switch mode {
	case "exit":
		note("start")
		os.Exit(3)
	case "run":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		note("start")
		<-ch
		note("term")
		os.Exit(0)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		note("start")
		time.Sleep(time.Minute)
	case "stdin":
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
		note("start")
		_, _ = io.Copy(io.Discard, os.Stdin)
		note("eof")
		os.Exit(0)
	}
	os.Exit(2)
}

// supervisor returns a supervisor of the test binary as a child in mode,
// and the path of the child's log.
func supervisor(t *testing.T, mode string, o Options) (*Supervisor, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "child.log")
	o.Path = exe
	o.Args = []string{"-test.run=^$"}
	o.Env = append(os.Environ(), "KILN_SUPERVISE_CHILD="+mode, "KILN_SUPERVISE_LOG="+logPath)
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s, logPath
}

// run runs s until cancel is called; wait returns Run's error.
func run(t *testing.T, s *Supervisor) (cancel func(), wait func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(cancel)
	return cancel, func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return 30s after its context ended")
			return nil
		}
	}
}

func recvPID(t *testing.T, ch <-chan int) int {
	t.Helper()
	select {
	case pid := <-ch:
		return pid
	case <-time.After(30 * time.Second):
		t.Fatal("no child started within 30s")
		return 0
	}
}

func gone(pid int) bool { return syscall.Kill(pid, 0) != nil }

func readLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// A child that exits is started again, after a delay that doubles.
func TestRestartsAChildThatExits(t *testing.T) {
	t.Parallel()
	pids := make(chan int, 10)
	s, logPath := supervisor(t, "exit", Options{MinRestartDelay: 20 * time.Millisecond, MaxRestartDelay: 40 * time.Millisecond,
		Started: func(pid int) { pids <- pid }})
	cancel, wait := run(t, s)
	var starts []time.Time
	for range 4 {
		recvPID(t, pids)
		starts = append(starts, time.Now())
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Delays 20ms, 40ms, 40ms (the maximum): each gap is at least that.
	for i, want := range []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond} {
		if gap := starts[i+1].Sub(starts[i]); gap < want {
			t.Errorf("restart %d came %s after the previous start, want at least %s", i+1, gap, want)
		}
	}
	// The fourth child may have been stopped before it wrote its line.
	if got := readLog(t, logPath); len(got) < 3 {
		t.Errorf("child log %q, want at least 3 starts", got)
	}
}

// When its context ends, Run sends SIGTERM and returns once the child has
// exited; the child ran at the nice value asked for.
func TestStopsTheChildWithSIGTERM(t *testing.T) {
	t.Parallel()
	pids := make(chan int, 1)
	want := 7
	if n, err := ProcessNice(os.Getpid()); err == nil && n >= want {
		t.Skipf("the tests run at nice %d: a child at nice %d would not be lower", n, want)
	}
	s, logPath := supervisor(t, "run", Options{Nice: want, Started: func(pid int) { pids <- pid }})
	cancel, wait := run(t, s)
	pid := recvPID(t, pids)
	if runtime.GOOS == "linux" {
		if n, err := ProcessNice(pid); err != nil || n != 7 {
			t.Errorf("child's nice value %d (%v), want 7", n, err)
		}
		// The thread that forked the child ends with its goroutine, just
		// after the fork, and it is never the main thread: in the end no
		// thread of the parent has the child's priority.
		waitNoThreadWith(t, 16, want, "the child's nice value")
	}
	// Wait for the child to be ready for the signal before sending it.
	waitLogged(t, logPath)
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := readLog(t, logPath); strings.Join(got, " ") != "start term" {
		t.Errorf("child log %q, want it started once and handled SIGTERM", got)
	}
	if !gone(pid) {
		t.Errorf("child %d still exists after Run returned", pid)
	}
}

// A child that ignores SIGTERM is killed after StopTimeout.
func TestKillsAChildThatIgnoresSIGTERM(t *testing.T) {
	t.Parallel()
	pids := make(chan int, 1)
	s, logPath := supervisor(t, "ignore-term", Options{StopTimeout: 200 * time.Millisecond, Started: func(pid int) { pids <- pid }})
	cancel, wait := run(t, s)
	pid := recvPID(t, pids)
	waitLogged(t, logPath)
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !gone(pid) {
		t.Errorf("child %d still exists after Run returned", pid)
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	s, err := New(Options{Path: filepath.Join(t.TempDir(), "no-such-program")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "no-such-program") {
		t.Errorf("Run of a missing program: %v, want an error naming it", err)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{{}, {Path: "x", Nice: -1}, {Path: "x", Nice: 20}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", o)
		}
	}
}

// threadsWith lists the parent's threads whose stat field i (see
// fieldFromStat) is v.
func threadsWith(t *testing.T, i, v int) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // it exited meanwhile
		}
		if n, err := fieldFromStat(b, i); err == nil && n == v {
			out = append(out, task.Name())
		}
	}
	return out
}

// With Idle the child runs under SCHED_IDLE.
func TestIdleChild(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("SCHED_IDLE is Linux's")
	}
	pids := make(chan int, 1)
	s, _ := supervisor(t, "run", Options{Idle: true, Started: func(pid int) { pids <- pid }})
	cancel, wait := run(t, s)
	pid := recvPID(t, pids)
	if p, err := ProcessPolicy(pid); err != nil || p != 5 {
		t.Errorf("child's policy %d (%v), want 5 (SCHED_IDLE)", p, err)
	}
	waitNoThreadWith(t, 38, 5, "the child's policy")
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// With StopByStdin the child is stopped by the end of its stdin, and a
// child that ignores SIGTERM still stops in time.
func TestStopByStdin(t *testing.T) {
	t.Parallel()
	pids := make(chan int, 1)
	s, logPath := supervisor(t, "stdin", Options{StopByStdin: true, StopTimeout: time.Minute, Started: func(pid int) { pids <- pid }})
	cancel, wait := run(t, s)
	pid := recvPID(t, pids)
	waitLogged(t, logPath)
	_ = syscall.Kill(pid, syscall.SIGTERM) // ignored, as a supervised kiln worker does
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := readLog(t, logPath); strings.Join(got, " ") != "start eof" {
		t.Errorf("child log %q, want it started once and saw its stdin end", got)
	}
}

// A child that exits with one of FatalExitCodes is not started again.
func TestFatalExitCode(t *testing.T) {
	t.Parallel()
	pids := make(chan int, 10)
	s, _ := supervisor(t, "exit", Options{FatalExitCodes: []int{3}, MinRestartDelay: 10 * time.Millisecond, Started: func(pid int) { pids <- pid }})
	_, wait := run(t, s)
	err := wait()
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Run: %v, want an error with the exit status", err)
	}
	if n := len(pids); n != 1 {
		t.Errorf("started %d times, want once", n)
	}
}

// waitLogged waits, up to 30s, until the child has written its first
// line: its signal handling is then in place.
func waitLogged(t *testing.T, logPath string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(readLog(t, logPath)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNoThreadWith waits, up to 30s, until no thread of the parent has v
// in stat field i (the thread that forked the child ends just after the
// fork), and fails the test if one still has.
func waitNoThreadWith(t *testing.T, i, v int, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		lowered := threadsWith(t, i, v)
		if len(lowered) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("threads %v of the parent have %s", lowered, what)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
