package idempotency

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// holdingJobs is the engine with a Cancel that waits, for the job hold,
// until release is closed, so that a request keeps its key in progress.
type holdingJobs struct {
	*queue.Client
	hold    int64
	entered chan struct{}
	release chan struct{}
}

func (h *holdingJobs) Cancel(ctx context.Context, id int64) (*queue.Job, error) {
	if id == h.hold {
		h.entered <- struct{}{}
		<-h.release
	}
	return h.Client.Cancel(ctx, id)
}

// documentedStatuses returns the statuses the document lists for the
// operation method path.
func documentedStatuses(t *testing.T, doc []byte, method, path string) map[int]bool {
	t.Helper()
	var d struct {
		Paths map[string]map[string]struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	op, ok := d.Paths[path][strings.ToLower(method)]
	if !ok {
		t.Fatalf("the document has no %s %s", method, path)
	}
	out := map[int]bool{}
	for s := range op.Responses {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("%s %s: response %q", method, path, s)
		}
		out[n] = true
	}
	return out
}

// TestAnswersAreDocumented drives the middleware into each answer it
// gives in place of a handler, on a real operation, and checks that the
// API's document lists that status for the operation, as it does every
// status the middleware declares on every POST.
func TestAnswersAreDocumented(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		w := queue.NewWorkers()
		w.HandleFunc("noop", func(context.Context, *queue.Job) error { return nil })
		c := e.Client(t, queue.Config{Workers: w}, false)
		store := NewStore(e.DB, Options{})
		jobs := &holdingJobs{Client: c, entered: make(chan struct{}, 1), release: make(chan struct{})}
		api := testutil.Must(httpapi.New(httpapi.Config{Jobs: jobs, Idempotency: store}))(t)
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		doc := api.Doc()

		// Every POST operation lists every status the middleware
		// declares.
		for _, p := range api.Patterns() {
			method, path, _ := strings.Cut(p, " ")
			if method != http.MethodPost {
				continue
			}
			listed := documentedStatuses(t, doc, method, path)
			for status := range store.Responses() {
				if !listed[status] {
					t.Errorf("%s does not document %d", p, status)
				}
			}
		}

		var ids []int64
		for range 2 {
			res, err := c.Insert(context.Background(), queue.InsertParams{Kind: "noop", Opts: queue.InsertOpts{RunIn: time.Hour}})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, res.Job.ID)
		}
		jobs.hold = ids[1]
		cancel := func(id int64, key string) (int, http.Header) {
			t.Helper()
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/jobs/"+strconv.FormatInt(id, 10)+"/cancel", nil)
			if err != nil {
				t.Error(err)
				return 0, nil
			}
			req.Header.Set(Header, key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return 0, nil
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode, resp.Header
		}
		const op = "/api/v1/jobs/{id}/cancel"
		listed := documentedStatuses(t, doc, http.MethodPost, op)
		answered := func(what string, got, want int) {
			t.Helper()
			if got != want {
				t.Errorf("%s: status %d, want %d", what, got, want)
			}
			if !listed[got] {
				t.Errorf("%s: answered %d, which the document does not list for POST %s", what, got, op)
			}
		}

		got, _ := cancel(ids[0], `"cancel-1"`)
		answered("first cancel", got, http.StatusOK)
		got, _ = cancel(ids[1], `"cancel-1"`)
		answered("another cancel with its key", got, http.StatusUnprocessableEntity)
		got, _ = cancel(ids[1], `"unterminated`)
		answered("a malformed key", got, http.StatusBadRequest)

		first := make(chan int, 1)
		go func() {
			s, _ := cancel(ids[1], `"cancel-2"`)
			first <- s
		}()
		select {
		case <-jobs.entered:
		case <-time.After(30 * time.Second):
			close(jobs.release)
			t.Fatal("the first cancel did not reach the engine")
		}
		got, h := cancel(ids[1], `"cancel-2"`)
		close(jobs.release)
		answered("the same cancel while the first runs", got, http.StatusConflict)
		if h.Get("Retry-After") == "" {
			t.Error("409 without Retry-After")
		}
		answered("the first of two with one key", <-first, http.StatusOK)
	})
}
