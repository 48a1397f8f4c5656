package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// The helpers of the tests that kill workers mid-run, on either driver.

// errorCap limits a test's reported per-job errors to the first 20.
type errorCap struct {
	t *testing.T
	n int
}

func (e *errorCap) errorf(format string, args ...any) {
	e.t.Helper()
	if e.n++; e.n <= 20 {
		e.t.Errorf(format, args...)
	}
}

func (e *errorCap) done() {
	if e.n > 20 {
		e.t.Errorf("... and %d more", e.n-20)
	}
}

// waitCounts waits up to d until done holds for the number of jobs in
// each state, failing at once if one of workers exits or done returns an
// error; what says what is awaited. It returns the last counts.
func waitCounts(ctx context.Context, t *testing.T, c *queue.Client, what string, d time.Duration, workers []*proc, done func(n map[queue.JobState]int64) (bool, error)) map[queue.JobState]int64 {
	t.Helper()
	var last map[queue.JobState]int64
	waitFor(t, d,
		func() string {
			s := fmt.Sprintf("%s (counts %v)", what, last)
			for _, w := range workers {
				s += "\n--- " + w.name + ":\n" + tail(w.stderr.String(), 30)
			}
			return s
		},
		func() (bool, error) {
			for _, w := range workers {
				if w.exited() {
					return false, fmt.Errorf("%s exited early\n%s", w.name, w.stderr)
				}
			}
			n, err := counts(ctx, c)
			if err != nil {
				return false, err
			}
			last = n
			return done(n)
		})
	return last
}

// waitCompleted waits up to d until at least n jobs are completed and
// returns how many are, failing at once if one of workers exits.
func waitCompleted(ctx context.Context, t *testing.T, c *queue.Client, n int64, d time.Duration, workers ...*proc) int64 {
	t.Helper()
	last := waitCounts(ctx, t, c, fmt.Sprintf("%d jobs to be completed", n), d, workers,
		func(counts map[queue.JobState]int64) (bool, error) { return counts[queue.StateCompleted] >= n, nil })
	return last[queue.StateCompleted]
}

// waitAllCompleted waits up to d until total jobs are completed, failing
// at once if one of workers exits or a job fails or is cancelled.
func waitAllCompleted(ctx context.Context, t *testing.T, c *queue.Client, total int, d time.Duration, workers ...*proc) {
	t.Helper()
	waitCounts(ctx, t, c, fmt.Sprintf("%d jobs to complete", total), d, workers,
		func(n map[queue.JobState]int64) (bool, error) {
			if bad := n[queue.StateFailed] + n[queue.StateCancelled]; bad > 0 {
				return false, fmt.Errorf("%d jobs failed or were cancelled", bad)
			}
			return n[queue.StateCompleted] == int64(total), nil
		})
}

// heldJobs returns the jobs running when a worker was killed, only those
// attempted by worker unless it is empty, and logs them; who names the
// dead worker in messages. None is fatal: the test would prove nothing.
func heldJobs(ctx context.Context, t *testing.T, c *queue.Client, worker, who string) map[int64]bool {
	t.Helper()
	held := map[int64]bool{}
	for _, j := range allJobs(ctx, t, c, queue.ListParams{States: []queue.JobState{queue.StateRunning}}) {
		if worker == "" || j.AttemptedBy == worker {
			held[j.ID] = true
		}
	}
	if len(held) == 0 {
		t.Fatalf("%s held no running job when it was killed; the test proves nothing", who)
	}
	n, err := counts(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s with %d completed and %d jobs held by it", who, n[queue.StateCompleted], len(held))
	return held
}

// checkRanOnceMore checks the jobs of a run in which a worker was killed:
// total jobs, all inserted and completed; the jobs it held ran once more
// each, with one error naming the expired lease, and every other job ran
// once without errors. worker, when not empty, is the dead worker's id:
// no second attempt may be its, and the lease error must name it. who
// names it in messages. It returns how many jobs ran twice.
func checkRanOnceMore(ctx context.Context, t *testing.T, c *queue.Client, total int, inserted, held map[int64]bool, worker, who string) int {
	t.Helper()
	jobs := allJobs(ctx, t, c, queue.ListParams{})
	if len(jobs) != total {
		t.Fatalf("%d jobs in the database, want %d", len(jobs), total)
	}
	ec := &errorCap{t: t}
	defer ec.done()
	rerun := 0
	for _, j := range jobs {
		if !inserted[j.ID] {
			ec.errorf("job %d was never inserted", j.ID)
		}
		if j.State != queue.StateCompleted {
			ec.errorf("job %d is %s, want completed", j.ID, j.State)
		}
		switch {
		case j.Attempt > 2:
			ec.errorf("job %d ran %d times", j.ID, j.Attempt)
		case j.Attempt == 2:
			rerun++
			if !held[j.ID] {
				ec.errorf("job %d ran twice but %s did not hold it when it died; errors %+v", j.ID, who, j.Errors)
			}
			if worker != "" && j.AttemptedBy == worker {
				ec.errorf("job %d: second attempt by the dead %s", j.ID, who)
			}
		case held[j.ID]:
			ec.errorf("job %d was held by %s when it died but ran %d time(s)", j.ID, who, j.Attempt)
		}
		if held[j.ID] {
			if len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "lease") || !strings.Contains(j.Errors[0].Error, worker) {
				ec.errorf("job %d: errors %+v, want one naming %s's expired lease", j.ID, j.Errors, who)
			}
		} else if len(j.Errors) != 0 {
			ec.errorf("job %d: unexpected errors %+v", j.ID, j.Errors)
		}
	}
	return rerun
}
