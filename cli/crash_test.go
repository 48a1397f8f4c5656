package cli

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// TestWorkerCrash kills a worker with SIGKILL in the middle of a run and
// checks that a second worker finishes every job, running again exactly
// the jobs the dead one held, once more each.
func TestWorkerCrash(t *testing.T) {
	t.Parallel()
	const total = 5000
	ctx := testCtx(t)
	db := filepath.Join(t.TempDir(), "kiln.db")
	c := openDB(t, db)

	rng := rand.New(rand.NewPCG(1, 2))
	params := make([]queue.InsertParams, total)
	for i := range params {
		params[i] = queue.InsertParams{Kind: "sleep", Args: []byte(fmt.Sprintf(`{"ms":%d}`, 10+rng.IntN(41)))}
	}
	res, err := c.InsertMany(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	inserted := make(map[int64]bool, total)
	for _, r := range res {
		inserted[r.Job.ID] = true
	}

	workerArgs := []string{"worker", "--db", db, "--lease", "3s", "--queues", "default=100"}
	w1 := start(t, procOpts{}, workerArgs...)
	waitCompleted(ctx, t, c, total*15/100, 60*time.Second, w1)
	w1.kill()

	// The jobs the dead worker held, as the database records them.
	held := heldJobs(ctx, t, c, "", "the first worker")

	w2 := start(t, procOpts{}, workerArgs...)
	waitAllCompleted(ctx, t, c, total, 90*time.Second, w2)
	w2.signal(syscall.SIGTERM)
	if code := w2.wait(30 * time.Second); code != 0 {
		t.Fatalf("second worker exited with %d after SIGTERM\n%s", code, w2.stderr)
	}
	if !strings.Contains(w2.stderr.String(), "rescued jobs") {
		t.Errorf("second worker did not log the rescue:\n%s", w2.stderr)
	}

	rerun := checkRanOnceMore(ctx, t, c, total, inserted, held, "", "the first worker")
	t.Logf("%d jobs ran twice", rerun)
}

// TestWorkerGracefulShutdown sends SIGTERM to workers with running jobs.
func TestWorkerGracefulShutdown(t *testing.T) {
	t.Parallel()

	// Jobs longer than --shutdown-timeout are handed back at once: available
	// again, the attempt not counted, no lease left to expire.
	t.Run("hand back", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		db := filepath.Join(t.TempDir(), "kiln.db")
		c := openDB(t, db)
		ids := insertSleeps(ctx, t, c, 3, 5000)
		w := start(t, procOpts{}, "worker", "--db", db, "--shutdown-timeout", "100ms")
		waitRunning(ctx, t, c, w, len(ids))

		sent := time.Now()
		w.signal(syscall.SIGTERM)
		code := w.wait(10 * time.Second)
		took := time.Since(sent)
		if code != 0 {
			t.Fatalf("worker exited with %d after SIGTERM\n%s", code, w.stderr)
		}
		if took > 4*time.Second {
			t.Errorf("worker took %s to exit with --shutdown-timeout 100ms", took)
		}
		for _, id := range ids {
			j, err := c.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if j.State != queue.StateAvailable || j.Attempt != 0 || len(j.Errors) != 0 || j.LeaseExpiresAt != nil {
				t.Errorf("job %d after shutdown: state %s attempt %d errors %+v lease %v; want available, attempt 0, no error, no lease",
					id, j.State, j.Attempt, j.Errors, j.LeaseExpiresAt)
			}
		}
	})

	// Jobs shorter than --shutdown-timeout finish before the worker exits.
	t.Run("finish", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		db := filepath.Join(t.TempDir(), "kiln.db")
		c := openDB(t, db)
		ids := insertSleeps(ctx, t, c, 3, 1500)
		w := start(t, procOpts{}, "worker", "--db", db, "--shutdown-timeout", "30s")
		waitRunning(ctx, t, c, w, len(ids))
		w.signal(syscall.SIGTERM)
		if code := w.wait(20 * time.Second); code != 0 {
			t.Fatalf("worker exited with %d after SIGTERM\n%s", code, w.stderr)
		}
		for _, id := range ids {
			j, err := c.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if j.State != queue.StateCompleted || j.Attempt != 1 {
				t.Errorf("job %d after shutdown: state %s attempt %d; want completed on attempt 1", id, j.State, j.Attempt)
			}
		}
	})
}

func insertSleeps(ctx context.Context, t *testing.T, c *queue.Client, n, ms int) []int64 {
	t.Helper()
	var ids []int64
	for range n {
		r, err := c.Insert(ctx, queue.InsertParams{Kind: "sleep", Args: []byte(`{"ms":` + strconv.Itoa(ms) + `}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.Job.ID)
	}
	return ids
}

func waitRunning(ctx context.Context, t *testing.T, c *queue.Client, w *proc, n int) {
	t.Helper()
	waitFor(t, 30*time.Second,
		func() string { return fmt.Sprintf("%d running jobs\n%s", n, w.stderr) },
		func() (bool, error) {
			if w.exited() {
				return false, fmt.Errorf("worker exited early")
			}
			cnt, err := counts(ctx, c)
			return cnt[queue.StateRunning] == int64(n), err
		})
}

// TestInsertDurable kills a process that inserts jobs one at a time and
// checks that every job whose insert had returned is in the database.
func TestInsertDurable(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := filepath.Join(t.TempDir(), "kiln.db")
	c := openDB(t, db) // migrated before the helper starts
	p := start(t, procOpts{helper: "insert-loop"}, db)
	waitFor(t, 60*time.Second,
		func() string { return "200 ids from the insert loop\n" + p.stderr.String() },
		func() (bool, error) {
			if p.exited() {
				return false, fmt.Errorf("insert loop exited early")
			}
			return strings.Count(p.stdout.String(), "\n") >= 200, nil
		})
	p.kill()

	out := p.stdout.String()
	lines := strings.Split(out[:strings.LastIndexByte(out, '\n')], "\n")
	var last int64
	for _, l := range lines {
		id, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			t.Fatalf("bad line %q from the insert loop", l)
		}
		if id <= last {
			t.Errorf("id %d after %d", id, last)
		}
		last = id
		if _, err := c.Get(ctx, id); err != nil {
			t.Errorf("job %d was reported inserted but is not in the database: %v", id, err)
		}
	}
	t.Logf("%d inserted ids checked", len(lines))
}
