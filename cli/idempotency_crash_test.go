package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/crashpoint"
	"github.com/kilnhq/kiln/internal/idempotency"
	"github.com/kilnhq/kiln/internal/testenv"
)

// TestIdempotentPostSurvivesCrash kills serve between a keyed POST's
// commit and the storing of its response (the crash point
// idempotency.before-store), starts it again and sends the same request
// with the same key: the answer is the first request's work, marked
// replayed, and the work exists once. Every POST that creates something
// is tried, on SQLite and on PostgreSQL.
func TestIdempotentPostSurvivesCrash(t *testing.T) {
	t.Parallel()
	for _, dbName := range []string{"sqlite", "postgres"} {
		t.Run(dbName, func(t *testing.T) {
			t.Parallel()
			db := filepath.Join(t.TempDir(), "kiln.db")
			if dbName == "postgres" {
				db, _ = postgresURL(t)
			}
			mustKiln(t, "migrate", "--db", db)
			token := strings.TrimSpace(mustKiln(t, "token", "create", "--scope", "admin", "--db", db))
			crashAfterCommit(t, db, token)
		})
	}
}

// crashCase is one keyed POST that does work.
type crashCase struct {
	name        string
	path        func() string
	contentType string
	body        func() []byte
	// Either what it creates shows in a list ...
	list      func() string // GET path of the list
	listField string        // the array in the list's answer
	id        string        // field of the POST's answer that ...
	listID    string        // ... equals this field of the one item listed
	// ... or setup prepares the job it changes, and check tells whether
	// the change happened once.
	setup func()
	check func(got crashResponse)
}

func crashAfterCommit(t *testing.T, db, token string) {
	c := &crashClient{t: t, token: token, http: &http.Client{Timeout: 20 * time.Second}}
	var userID, webhookID int64
	jsonBody := func(s string) func() []byte { return func() []byte { return []byte(s) } }
	fixed := func(s string) func() string { return func() string { return s } }
	imgBody, imgType := multipartPNG(t)
	cases := []crashCase{
		{name: "user", path: fixed("/api/v1/users"), body: jsonBody(`{"email":"ada@example.com","name":"Ada"}`),
			list: fixed("/api/v1/users"), listField: "users", id: "id", listID: "id"},
		{name: "order", path: fixed("/api/v1/orders"),
			body: func() []byte { return fmt.Appendf(nil, `{"user_id":%d,"amount_cents":1250,"currency":"EUR"}`, userID) },
			list: fixed("/api/v1/orders"), listField: "orders", id: "id", listID: "id"},
		{name: "job", path: fixed("/api/v1/jobs"), body: jsonBody(`{"kind":"noop","args":{"n":1}}`),
			list: fixed("/api/v1/jobs?kind=noop"), listField: "jobs", id: "id", listID: "id"},
		{name: "report", path: fixed("/api/v1/reports"), body: jsonBody(`{"kind":"order_totals","group_by":"user"}`),
			list: fixed("/api/v1/jobs?kind=report.generate"), listField: "jobs", id: "job_id", listID: "id"},
		{name: "webhook", path: fixed("/api/v1/webhooks"), body: jsonBody(`{"url":"https://hooks.example.com/kiln"}`),
			list: fixed("/api/v1/webhooks"), listField: "webhooks", id: "id", listID: "id"},
		{name: "delivery", path: func() string { return fmt.Sprintf("/api/v1/webhooks/%d/deliveries", webhookID) },
			body: jsonBody(`{"event":"order.created","payload":{"order":1}}`),
			list: func() string { return fmt.Sprintf("/api/v1/webhooks/%d/deliveries", webhookID) }, listField: "deliveries", id: "id", listID: "id"},
		{name: "image", path: fixed("/api/v1/images"), contentType: imgType, body: func() []byte { return imgBody },
			list: fixed("/api/v1/images"), listField: "images", id: "id", listID: "id"},
	}
	var failedJob, scheduledJob int64
	cases = append(cases,
		crashCase{name: "retry", path: func() string { return fmt.Sprintf("/api/v1/jobs/%d/retry", failedJob) }, body: jsonBody(""),
			// A job that fails for good on its first attempt and succeeds
			// on its second. The serve that dies may have claimed the
			// retried job first, and then it is rescued as failed once its
			// lease runs out; either way it ends at attempt 2. Retried
			// twice, it would run a third time.
			setup: func() {
				failedJob = c.insertJob(`{"kind":"fail","args":{"times":1,"permanent":true},"max_attempts":1}`)
				c.waitJob(failedJob, "failed")
			},
			check: func(got crashResponse) {
				j := c.waitJob(failedJob, "completed", "failed")
				if j["attempt"] != float64(2) {
					t.Errorf("retry: the job ended %v at attempt %v, want attempt 2", j["state"], j["attempt"])
				}
			}},
		crashCase{name: "cancel", path: func() string { return fmt.Sprintf("/api/v1/jobs/%d/cancel", scheduledJob) }, body: jsonBody(""),
			setup: func() { scheduledJob = c.insertJob(`{"kind":"noop","run_in_ms":3600000}`) },
			check: func(got crashResponse) {
				if got.field(t, "state") != "cancelled" {
					t.Errorf("cancel: the repeat answered %s", got)
				}
			}},
	)
	if _, err := exec.LookPath("ffmpeg"); err == nil || testenv.CI() {
		cases = append(cases, crashCase{name: "video", path: fixed("/api/v1/videos?filename=a.mp4"), contentType: "video/mp4",
			body: jsonBody("not really a video, but stored all the same"),
			list: fixed("/api/v1/jobs?kind=video.thumbnail"), listField: "jobs", id: "job_id", listID: "id"})
	}

	// Every serve is armed: the crash point fires on the first keyed
	// request that commits new work, and the repeat of the previous
	// case, which returns committed work, does not reach it.
	serve := func() *proc {
		s := start(t, procOpts{env: []string{crashpoint.Env + "=" + idempotency.CrashBeforeStore}},
			"serve", "--addr", "127.0.0.1:0", "--db", db, "--queues", "default=1", "--lease", "3s")
		c.addr = waitListening(t, s)[1]
		return s
	}
	s := serve()
	for _, tc := range cases {
		if tc.setup != nil {
			tc.setup()
		}
		key := `"crash-` + tc.name + `"`
		path, body := tc.path(), tc.body()
		if _, err := c.post(path, tc.contentType, key, body); err == nil {
			t.Fatalf("%s: the first request was answered; the crash point did not fire\n%s", tc.name, s.stderr)
		}
		if code := s.wait(15 * time.Second); code != -1 {
			t.Fatalf("%s: serve exited with %d, want killed\n%s", tc.name, code, s.stderr)
		}
		s = serve()

		// Right after the commit the key is held for a few seconds, as
		// the response might still be on its way: 409 until then.
		var got crashResponse
		waitFor(t, 20*time.Second, func() string { return tc.name + ": the repeat answered " + got.String() }, func() (bool, error) {
			var err error
			got, err = c.post(path, tc.contentType, key, body)
			return err == nil && got.status != http.StatusConflict, err
		})
		if got.status/100 != 2 || got.header.Get(idempotency.ReplayedHeader) != "true" {
			t.Fatalf("%s: the repeat after the crash answered %s; want the first request's work, replayed", tc.name, got)
		}
		if tc.check != nil {
			tc.check(got)
		} else {
			items := c.list(tc.list(), tc.listField)
			if len(items) != 1 {
				t.Fatalf("%s: %d created, want 1: %v", tc.name, len(items), items)
			}
			if want, have := items[0][tc.listID], got.field(t, tc.id); fmt.Sprint(want) != fmt.Sprint(have) {
				t.Fatalf("%s: the repeat answered %s %v, but what exists is %v", tc.name, tc.id, have, want)
			}
		}
		again, err := c.post(path, tc.contentType, key, body)
		if err != nil || !bytes.Equal(again.body, got.body) || again.header.Get(idempotency.ReplayedHeader) != "true" {
			t.Fatalf("%s: the next repeat answered %s (%v); want the stored %s", tc.name, again, err, got)
		}
		switch tc.name {
		case "user":
			userID = int64(got.field(t, "id").(float64))
		case "webhook":
			webhookID = int64(got.field(t, "id").(float64))
		}
	}
}

// crashClient sends requests to the serve of the moment.
type crashClient struct {
	t     testing.TB
	token string
	addr  string
	http  *http.Client
}

type crashResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r crashResponse) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

func (r crashResponse) field(t testing.TB, name string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer %s: %v", r, err)
	}
	return m[name]
}

// post sends a keyed POST; err is the transport's (the server died).
func (c *crashClient) post(path, contentType, key string, body []byte) (crashResponse, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+c.addr+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType == "" {
		contentType = "application/json"
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set(idempotency.Header, key)
	resp, err := c.http.Do(req)
	if err != nil {
		return crashResponse{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return crashResponse{resp.StatusCode, resp.Header, b}, err
}

// insertJob enqueues a job without a key (the crash point is not
// reached) and returns its id.
func (c *crashClient) insertJob(body string) int64 {
	c.t.Helper()
	var res crashResponse
	var err error
	res.status, res.body, err = c.do(http.MethodPost, "/api/v1/jobs", []byte(body))
	if err != nil || res.status != http.StatusCreated {
		c.t.Fatalf("POST /api/v1/jobs %s: %s (%v)", body, res, err)
	}
	return int64(res.field(c.t, "id").(float64))
}

// waitJob waits up to 30 s for job id to reach one of states, and
// returns it.
func (c *crashClient) waitJob(id int64, states ...string) map[string]any {
	c.t.Helper()
	var j map[string]any
	waitFor(c.t, 30*time.Second, func() string { return fmt.Sprintf("job %d %v: %v", id, states, j) }, func() (bool, error) {
		status, b, err := c.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d", id), nil)
		if err != nil || status != http.StatusOK {
			return false, fmt.Errorf("GET job %d: %d %s (%v)", id, status, b, err)
		}
		if err := json.Unmarshal(b, &j); err != nil {
			return false, err
		}
		return slices.Contains(states, fmt.Sprint(j["state"])), nil
	})
	return j
}

// do sends an unkeyed request.
func (c *crashClient) do(method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://"+c.addr+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// list returns the items of the array field of GET path.
func (c *crashClient) list(path, field string) []map[string]any {
	c.t.Helper()
	status, b, err := c.do(http.MethodGet, path, nil)
	var m map[string]json.RawMessage
	var items []map[string]any
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil || status != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s (%v)", path, status, b, err)
	}
	if err := json.Unmarshal(m[field], &items); err != nil {
		c.t.Fatalf("GET %s: field %s of %s: %v", path, field, b, err)
	}
	return items
}

// multipartPNG returns an image upload's body and content type.
func multipartPNG(t *testing.T) ([]byte, string) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	img.Set(1, 1, color.RGBA{R: 255, A: 255})
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", "dot.png")
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(fw, img); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}
