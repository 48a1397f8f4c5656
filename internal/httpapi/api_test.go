package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

type env struct {
	*testutil.Server
	t      *testing.T
	client *queue.Client
	api    *API
	logs   *testutil.Logs
	// release unblocks "block" jobs; releaseJobs closes it once.
	release     chan struct{}
	releaseJobs func()
}

// newClient returns a started client on a fresh SQLite file with the
// kinds noop and block (which runs until release is closed or its
// context ends).
func newClient(t testing.TB, release chan struct{}) *queue.Client {
	t.Helper()
	d, err := sqlitedriver.Open(filepath.Join(t.TempDir(), "kiln.db"), sqlitedriver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	w := queue.NewWorkers()
	w.HandleFunc("noop", func(context.Context, *queue.Job) error { return nil })
	w.HandleFunc("block", func(ctx context.Context, _ *queue.Job) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	w.HandleFunc("video", func(context.Context, *queue.Job) error { return nil }, queue.WithUnavailable(errors.New("ffmpeg not found on PATH")))
	c, err := queue.New(queue.Config{
		Driver: d, Workers: w, Queues: map[string]queue.QueueConfig{"default": {MaxWorkers: 4}},
		PollInterval: 20 * time.Millisecond, CancelCheckInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
	return c
}

func newEnv(t *testing.T, extra ...func(*API)) *env { return newEnvWith(t, nil, extra...) }

// newEnvWith is newEnv with configure applied to the API's Config
// before the API is made.
func newEnvWith(t *testing.T, configure func(*Config), extra ...func(*API)) *env {
	t.Helper()
	e := &env{t: t, logs: &testutil.Logs{}, release: make(chan struct{})}
	var once sync.Once
	e.releaseJobs = func() { once.Do(func() { close(e.release) }) }
	e.client = newClient(t, e.release)
	// Registered after the client's cleanup, so it runs first: the client
	// then stops without waiting for blocked jobs.
	t.Cleanup(e.releaseJobs)
	cfg := Config{Jobs: e.client, Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), BodyLimit: 4096}
	if configure != nil {
		configure(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range extra {
		f(a)
	}
	e.api = a
	e.Server = testutil.Serve(t, a)
	return e
}

func decodeJob(t *testing.T, r testutil.Response) jobResponse {
	t.Helper()
	var j jobResponse
	if err := json.Unmarshal(r.Body, &j); err != nil {
		t.Fatalf("job %q: %v", r.Body, err)
	}
	return j
}

// waitState polls the job until it is in state.
func (e *env) waitState(id string, state queue.JobState) jobResponse {
	e.t.Helper()
	var j jobResponse
	testutil.Eventually(e.t, "job "+id+" is "+string(state), func() bool {
		j = decodeJob(e.t, e.Do("GET", "/api/v1/jobs/"+id, ""))
		return j.State == state
	})
	return j
}

func TestErrorTableCoversEveryCode(t *testing.T) {
	for _, c := range []Code{CodeInvalid, CodeValidation, CodeNotFound, CodeMethodNotAllowed, CodeConflict, CodeTooLarge, CodeUnsupportedMedia, CodeUnavailable, CodeInternal} {
		if _, ok := codeStatus[c]; !ok {
			t.Errorf("code %s has no status", c)
		}
	}
	for err, want := range map[error]int{
		queue.ErrNotFound: 404, queue.ErrWrongState: 409, queue.ErrInvalid: 422, queue.ErrUnknownKind: 422,
		queue.ErrStopped: 503, errors.New("disk on fire"): 500,
	} {
		if got := StatusOf(errors.Join(errors.New("ctx"), err)); got != want {
			t.Errorf("%v: status %d, want %d", err, got, want)
		}
	}
}
