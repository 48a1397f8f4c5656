package queuetest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kilnhq/kiln/queue"
)

var progressTests = []test{
	{"ProgressResultHeartbeat", testProgress},
	{"SnapshotNotRunning", testSnapshotNotRunning},
	{"ProgressPerAttempt", testProgressPerAttempt},
}

// testProgressPerAttempt: each attempt starts with no progress, and so does
// a finished job made available again by Retry; a stale "50%" from an
// earlier attempt is never shown for a new one.
func testProgressPerAttempt(h *harness) {
	seen := make(chan string, 4)
	w := queue.NewWorkers()
	w.HandleFunc("halfway", func(ctx context.Context, j *queue.Job) error {
		seen <- fmt.Sprintf("attempt %d starts at %d%% %q", j.Attempt, j.Progress, j.ProgressMessage)
		if err := j.SetProgress(ctx, 50, "half"); err != nil {
			return queue.Permanent(err)
		}
		if j.Attempt == 1 {
			return errors.New("first attempt fails after reporting progress")
		}
		return nil
	}, fixed(3, time.Second))
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1})
	j := h.insert(c, queue.InsertParams{Kind: "halfway"})
	for i, want := range []string{`attempt 1 starts at 0% ""`, `attempt 2 starts at 0% ""`} {
		if got := recv(h, seen, want); got != want {
			h.Errorf("handler saw %s, want %s", got, want)
		}
		if i == 0 {
			h.waitState(c, j.ID, queue.StateRetryable)
			h.clock.Advance(time.Second)
		}
	}
	done := h.waitState(c, j.ID, queue.StateCompleted)
	if done.Progress != 100 {
		h.Errorf("completed job shows progress %d, want 100", done.Progress)
	}
	if err := c.Stop(context.Background()); err != nil {
		h.Fatal(err)
	}
	again, err := c.Retry(context.Background(), j.ID)
	if err != nil {
		h.Fatal(err)
	}
	if again.State != queue.StateAvailable || again.Progress != 0 || again.ProgressMessage != "" {
		h.Errorf("after Retry: %s progress %d %q, want available with no progress", again.State, again.Progress, again.ProgressMessage)
	}
}

// testProgress: progress is readable while the job runs (updates closer
// than ProgressInterval are skipped), Heartbeat extends the lease, and the
// result is stored on completion.
func testProgress(h *harness) {
	reached := make(chan string)
	next := make(chan struct{})
	problems := make(chan error, 10)
	step := func(name string) {
		reached <- name
		<-next
	}
	w := queue.NewWorkers()
	w.HandleFunc("report", func(ctx context.Context, j *queue.Job) error {
		if err := j.SetProgress(ctx, 40, "loading"); err != nil {
			problems <- fmt.Errorf("progress 40: %w", err)
		}
		step("40")
		// The clock has not moved: within ProgressInterval, skipped.
		if err := j.SetProgress(ctx, 60, "skipped"); err != nil {
			problems <- fmt.Errorf("progress 60: %w", err)
		}
		step("60")
		// The test moved the clock past ProgressInterval.
		if err := j.SetProgress(ctx, 70, "crunching"); err != nil {
			problems <- fmt.Errorf("progress 70: %w", err)
		}
		if err := j.Heartbeat(ctx); err != nil {
			problems <- fmt.Errorf("heartbeat: %w", err)
		}
		step("70")
		return j.SetResult(map[string]any{"rows": 3})
	}, noRetry)
	c := h.startClient(w, map[string]int{queue.DefaultQueue: 1}, func(cfg *queue.Config) {
		cfg.ProgressInterval = time.Second
		// Only the handler's Heartbeat moves the lease: a background one
		// that read the clock before it moved could land after it.
		cfg.HeartbeatInterval = leaseDuration / 2
	})
	j := h.insert(c, queue.InsertParams{Kind: "report"})

	recv(h, reached, "progress 40")
	if got := h.get(c, j.ID); got.State != queue.StateRunning || got.Progress != 40 || got.ProgressMessage != "loading" {
		h.Errorf("while running: %s progress %d %q, want running 40 \"loading\"", got.State, got.Progress, got.ProgressMessage)
	}
	next <- struct{}{}
	recv(h, reached, "progress 60")
	if got := h.get(c, j.ID); got.Progress != 40 || got.ProgressMessage != "loading" {
		h.Errorf("update within ProgressInterval was stored: progress %d %q", got.Progress, got.ProgressMessage)
	}
	now := h.clock.Advance(2 * time.Second)
	next <- struct{}{}
	recv(h, reached, "progress 70")
	got := h.get(c, j.ID)
	if got.Progress != 70 || got.ProgressMessage != "crunching" {
		h.Errorf("after ProgressInterval: progress %d %q, want 70 \"crunching\"", got.Progress, got.ProgressMessage)
	}
	if got.LeaseExpiresAt == nil || !got.LeaseExpiresAt.Equal(now.Add(leaseDuration)) {
		h.Errorf("after Heartbeat: lease expires %v, want %s", got.LeaseExpiresAt, now.Add(leaseDuration))
	}
	next <- struct{}{}
	got = h.waitState(c, j.ID, queue.StateCompleted)
	if !jsonEqual(got.Result, []byte(`{"rows":3}`)) || got.Progress != 100 {
		h.Errorf("completed: result %s progress %d, want {\"rows\":3} and 100", got.Result, got.Progress)
	}
	close(problems)
	for err := range problems {
		h.Errorf("in handler: %v", err)
	}
}

// testSnapshotNotRunning: the running-attempt methods of a snapshot job
// return ErrNotRunning.
func testSnapshotNotRunning(h *harness) {
	w := queue.NewWorkers()
	w.HandleFunc("job", nop)
	c := h.newClient(w, nil)
	j := h.get(c, h.insert(c, queue.InsertParams{Kind: "job"}).ID)
	if err := j.SetProgress(h.ctx, 10, "x"); !errors.Is(err, queue.ErrNotRunning) {
		h.Errorf("SetProgress on a snapshot: %v, want ErrNotRunning", err)
	}
	if err := j.SetResult(1); !errors.Is(err, queue.ErrNotRunning) {
		h.Errorf("SetResult on a snapshot: %v, want ErrNotRunning", err)
	}
	if err := j.Heartbeat(h.ctx); !errors.Is(err, queue.ErrNotRunning) {
		h.Errorf("Heartbeat on a snapshot: %v, want ErrNotRunning", err)
	}
	if got := h.get(c, j.ID); got.Progress != 0 || len(got.Result) != 0 {
		h.Errorf("snapshot methods changed the job: progress %d result %s", got.Progress, got.Result)
	}
}
