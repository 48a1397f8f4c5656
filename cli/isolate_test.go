package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/supervise"
	"github.com/kilnhq/kiln/queue"
)

var isolatedStarted = regexp.MustCompile(`"msg":"started","process":"isolated worker \(heavy=1\)","pid":(\d+)`)

// startIsolated starts serve with queue heavy isolated at priority (""
// for the default), and returns it
// and the isolated worker's process ID once that worker has started.
func startIsolated(t *testing.T, db, priority string) (*proc, int) {
	t.Helper()
	args := []string{"serve", "--addr", "127.0.0.1:0", "--db", db, "--id", "web", "--log-format", "json",
		"--queues", "default=2,heavy=1", "--isolate-queues", "heavy"}
	if priority != "" {
		args = append(args, "--isolate-priority", priority)
	}
	s := start(t, procOpts{}, args...)
	var pid int
	waitFor(t, 30*time.Second, func() string { return "the isolated worker to start\n" + s.stderr.String() }, func() (bool, error) {
		if s.exited() {
			return false, fmt.Errorf("serve exited: %s", s.stderr)
		}
		m := isolatedStarted.FindStringSubmatch(s.stderr.String())
		if m == nil {
			return false, nil
		}
		pid, _ = strconv.Atoi(m[1])
		return true, nil
	})
	return s, pid
}

// waitGone waits until process pid no longer exists.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	waitFor(t, 60*time.Second, func() string { return what }, func() (bool, error) {
		return syscall.Kill(pid, 0) != nil, nil
	})
}

// serve --isolate-queues works those queues in a kiln worker that it
// starts at the nice value asked for and stops when it stops; the other
// queues it works itself.
func TestServeIsolatesQueues(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := filepath.Join(t.TempDir(), "kiln.db")
	s, pid := startIsolated(t, db, "5")
	if runtime.GOOS == "linux" {
		if n, err := supervise.ProcessNice(pid); err != nil || n != 5 {
			t.Errorf("isolated worker's nice value %d (%v), want 5", n, err)
		}
		// The database URL, which may hold a password, is not on the
		// worker's command line.
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || bytes.Contains(cmdline, []byte(db)) {
			t.Errorf("isolated worker's command line %q (%v) names the database", cmdline, err)
		}
	}
	c := openDB(t, db)
	heavy, err := c.Insert(ctx, queue.InsertParams{Kind: "noop", Opts: queue.InsertOpts{Queue: "heavy"}})
	if err != nil {
		t.Fatal(err)
	}
	light, err := c.Insert(ctx, queue.InsertParams{Kind: "noop"})
	if err != nil {
		t.Fatal(err)
	}
	for id, by := range map[int64]string{heavy.Job.ID: "web-isolated", light.Job.ID: "web"} {
		var j *queue.Job
		waitFor(t, 30*time.Second, func() string { return fmt.Sprintf("job %d to complete: %+v", id, j) }, func() (bool, error) {
			j, err = c.Get(ctx, id)
			return err == nil && j.State == queue.StateCompleted, err
		})
		if j.AttemptedBy != by {
			t.Errorf("job %d in queue %s was worked by %q, want %q", id, j.Queue, j.AttemptedBy, by)
		}
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(60 * time.Second); code != 0 {
		t.Errorf("serve exited with %d after SIGTERM:\n%s", code, s.stderr)
	}
	// serve returned only after its worker had exited.
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("isolated worker %d still runs after serve exited", pid)
	}
}

// An isolated worker whose serve is killed, so that it cannot stop it,
// stops on its own.
func TestIsolatedWorkerStopsWhenServeIsKilled(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "kiln.db")
	s, pid := startIsolated(t, db, "")
	if runtime.GOOS == "linux" {
		if p, err := supervise.ProcessPolicy(pid); err != nil || p != 5 {
			t.Errorf("isolated worker's scheduling policy %d (%v), want 5 (SCHED_IDLE), the default", p, err)
		}
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	s.kill()
	waitGone(t, pid, fmt.Sprintf("isolated worker %d to stop after serve was killed", pid))
}
