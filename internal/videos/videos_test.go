package videos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testenv"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

type env struct {
	*testutil.Server
	t      *testing.T
	de     *dbtest.Env
	client *queue.Client
}

type envOpts struct {
	opts      Options
	maxUpload int64
}

func newEnv(t *testing.T, de *dbtest.Env, o envOpts) *env {
	t.Helper()
	bs := blobs.NewStore(de.DB)
	w := queue.NewWorkers()
	RegisterKinds(w, de.DB, bs, o.opts)
	c := de.Client(t, queue.Config{
		Workers:             w,
		Queues:              map[string]queue.QueueConfig{Queue: {MaxWorkers: 2}},
		PollInterval:        20 * time.Millisecond,
		CancelCheckInterval: 20 * time.Millisecond,
		ProgressInterval:    time.Nanosecond,
		DefaultRetry:        &queue.RetryPolicy{BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
	}, true)
	so := o.opts
	so.MaxUploadBytes = o.maxUpload
	svc := testutil.Must(NewService(de.DB, c, bs, so))(t)
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Modules: []httpapi.Module{NewHandler(svc)}}))(t)
	return &env{Server: testutil.Serve(t, api), t: t, de: de, client: c}
}

// do sends body, if any, with contentType, if any.
func (e *env) do(method, path, contentType string, body []byte) testutil.Response {
	e.t.Helper()
	var hdr []string
	if contentType != "" {
		hdr = []string{"Content-Type", contentType}
	}
	return e.Do(method, path, string(body), hdr...)
}

// upload posts video with the query q and expects 202; it returns the
// video's id.
func (e *env) upload(video []byte, q url.Values) int64 {
	e.t.Helper()
	r := e.do("POST", "/api/v1/videos?"+q.Encode(), "video/mp4", video)
	if r.Status != http.StatusAccepted {
		e.t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	m := r.JSON(e.t)
	if loc := r.Header.Get("Location"); loc != fmt.Sprintf("/api/v1/jobs/%v", m["job_id"]) {
		e.t.Errorf("Location %q for job %v", loc, m["job_id"])
	}
	return int64(m["id"].(float64))
}

// waitVideo polls the video until its job's state is one of states.
func (e *env) waitVideo(id int64, states ...string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := e.do("GET", fmt.Sprintf("/api/v1/videos/%d", id), "", nil)
		if r.Status != 200 {
			e.t.Fatalf("get video %d: %d %s", id, r.Status, r.Body)
		}
		m := r.JSON(e.t)
		for _, s := range states {
			if m["job_state"] == s || (m["job_state"] == nil && m["status"] != "pending") {
				return m
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("video %d did not reach %v: %s", id, states, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) job(id int64) *queue.Job {
	e.t.Helper()
	j, err := e.client.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

func problemCode(t *testing.T, r testutil.Response, status int) map[string]any {
	t.Helper()
	if r.Status != status || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %d %s %s, want a %d problem", r.Status, r.Header.Get("Content-Type"), r.Body, status)
	}
	return r.JSON(t)
}

var (
	sampleOnce sync.Once
	sample     []byte
	sampleErr  error
)

// sampleVideo returns a 3-second 640x360 MPEG-4 video that ffmpeg makes
// from its test pattern, skipping the test without ffmpeg.
func sampleVideo(t *testing.T) []byte {
	t.Helper()
	ff, err := FindFFmpeg("")
	if err != nil {
		testenv.SkipUnlessCI(t, "ffmpeg is not installed, so the thumbnail tests that run it are skipped: %v", err)
	}
	sampleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-video-test-")
		if err != nil {
			sampleErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "sample.mp4")
		cmd := exec.Command(ff, "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=10",
			"-t", "3", "-c:v", "mpeg4", "-pix_fmt", "yuv420p", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			sampleErr = fmt.Errorf("make the sample video: %v: %s", err, b)
			return
		}
		sample, sampleErr = os.ReadFile(out)
	})
	if sampleErr != nil {
		t.Fatal(sampleErr)
	}
	return sample
}

// TestThumbnail: an uploaded video gets a JPEG thumbnail of the asked
// width with the video's aspect ratio, never wider than the video, with
// progress reported and the result on the job; on both databases.
func TestThumbnail(t *testing.T) {
	video := sampleVideo(t)
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		for _, c := range []struct {
			width      string
			wantW      int
			wantH      int
			at         string
			wantAtSecs float64
		}{
			{"200", 200, 112, "1.5", 1.5},
			{"1000", 640, 360, "", 1}, // never wider than the video
		} {
			q := url.Values{"width": {c.width}, "filename": {"clip.mp4"}}
			if c.at != "" {
				q.Set("at", c.at)
			}
			id := e.upload(video, q)
			m := e.waitVideo(id, "completed", "failed")
			if m["status"] != "done" || m["error"] != nil || m["job"] != fmt.Sprintf("/api/v1/jobs/%v", m["job_id"]) || m["completed_at"] == nil || m["at"] != c.wantAtSecs {
				t.Fatalf("video %d: %v", id, m)
			}
			th := m["thumbnail"].(map[string]any)
			if th["width"] != float64(c.wantW) || th["height"] != float64(c.wantH) {
				t.Errorf("thumbnail %v, want %dx%d", th, c.wantW, c.wantH)
			}
			r := e.do("GET", th["url"].(string), "", nil)
			if r.Status != 200 || r.Header.Get("Content-Type") != "image/jpeg" {
				t.Fatalf("download: %d %v", r.Status, r.Header)
			}
			cfg, err := jpeg.DecodeConfig(bytes.NewReader(r.Body))
			if err != nil || cfg.Width != c.wantW || cfg.Height != c.wantH {
				t.Errorf("downloaded JPEG %dx%d (%v), want %dx%d", cfg.Width, cfg.Height, err, c.wantW, c.wantH)
			}
			if !strings.Contains(r.Header.Get("Content-Disposition"), fmt.Sprintf("clip-%d.jpg", id)) {
				t.Errorf("Content-Disposition %q", r.Header.Get("Content-Disposition"))
			}
			j := e.job(int64(m["job_id"].(float64)))
			var res result
			if err := json.Unmarshal(j.Result, &res); err != nil || res.VideoID != id || res.Width != c.wantW || res.Thumbnail != thumbnailPath(id) {
				t.Errorf("job result %s (%v)", j.Result, err)
			}
			if j.Progress != 100 || j.Queue != Queue || j.Attempt != 1 {
				t.Errorf("job: progress %d queue %s attempt %d", j.Progress, j.Queue, j.Attempt)
			}
		}
	})
}

// TestUnusableVideos: bytes that are no video, and a frame after the end,
// fail at once (one attempt) with a reason, on the video and the job.
func TestUnusableVideos(t *testing.T) {
	video := sampleVideo(t)
	t.Parallel()
	e := newEnv(t, dbtest.SQLite(t), envOpts{})
	for _, c := range []struct {
		name  string
		body  []byte
		at    string
		error string
	}{
		{"not a video", bytes.Repeat([]byte("not a video at all "), 500), "1", "ffmpeg could not read the video"},
		{"after the end", video, "60", "no frame at 60.000s"},
	} {
		id := e.upload(c.body, url.Values{"at": {c.at}})
		m := e.waitVideo(id, "completed", "failed")
		if m["status"] != "failed" || !strings.Contains(fmt.Sprint(m["error"]), c.error) || m["thumbnail"] != nil {
			t.Errorf("%s: %v, want failed with %q", c.name, m, c.error)
		}
		j := e.job(int64(m["job_id"].(float64)))
		if j.Attempt != 1 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, c.error) {
			t.Errorf("%s: job attempt %d errors %+v, want one permanent failure", c.name, j.Attempt, j.Errors)
		}
		problemCode(t, e.do("GET", fmt.Sprintf("/api/v1/videos/%d/thumbnail", id), "", nil), 409)
	}
}

// TestBadUploads: bad parameters, type, empty and oversized bodies get
// problems and leave no blob behind.
func TestBadUploads(t *testing.T) {
	t.Parallel()
	de := dbtest.SQLite(t)
	// A stand-in ffmpeg: these requests never reach it.
	e := newEnv(t, de, envOpts{opts: Options{FFmpeg: fakeFFmpeg(t, "exit 1")}, maxUpload: 1000})
	for _, c := range []struct {
		query, ct string
		body      []byte
		status    int
		field     string
	}{
		{"at=-1", "video/mp4", []byte("x"), 422, "at"},
		{"at=abc", "video/mp4", []byte("x"), 422, "at"},
		{"at=NaN", "video/mp4", []byte("x"), 422, "at"},
		{"at=90000", "video/mp4", []byte("x"), 422, "at"},
		{"width=5", "video/mp4", []byte("x"), 422, "width"},
		{"width=1&width=2", "video/mp4", []byte("x"), 422, "width"},
		{"", "text/plain", []byte("x"), 415, ""},
		{"", "", []byte("x"), 415, ""},
		{"", "video/mp4", nil, 400, ""},
		{"", "video/mp4", make([]byte, 1001), 413, ""},
	} {
		p := problemCode(t, e.do("POST", "/api/v1/videos?"+c.query, c.ct, c.body), c.status)
		if c.field != "" {
			errs, _ := p["errors"].([]any)
			if len(errs) != 1 || errs[0].(map[string]any)["field"] != c.field {
				t.Errorf("%s: errors %v, want one on %s", c.query, p["errors"], c.field)
			}
		}
	}
	var n int
	if err := de.DB.R.QueryRow("SELECT count(*) FROM blobs").Scan(&n); err != nil || n != 0 {
		t.Errorf("refused uploads left %d blobs (%v)", n, err)
	}
	problemCode(t, e.do("GET", "/api/v1/videos/99", "", nil), 404)
	problemCode(t, e.do("GET", "/api/v1/videos/x", "", nil), 400)
}

// TestUnavailableWithoutFFmpeg: without ffmpeg the kind is listed as
// unavailable and both ways of enqueueing it answer 422 with the reason,
// storing nothing.
func TestUnavailableWithoutFFmpeg(t *testing.T) {
	t.Parallel()
	de := dbtest.SQLite(t)
	e := newEnv(t, de, envOpts{opts: Options{FFmpeg: filepath.Join(t.TempDir(), "no-ffmpeg-here")}})
	p := problemCode(t, e.do("POST", "/api/v1/videos", "video/mp4", []byte("video")), 422)
	if !strings.Contains(fmt.Sprint(p["detail"]), "ffmpeg is not installed") {
		t.Errorf("upload without ffmpeg: %v", p)
	}
	p = problemCode(t, e.do("POST", "/api/v1/jobs", "application/json", []byte(`{"kind":"video.thumbnail","args":{"video_id":1}}`)), 422)
	if !strings.Contains(string(mustJSON(t, p)), "ffmpeg is not installed") {
		t.Errorf("enqueue without ffmpeg: %v", p)
	}
	r := e.do("GET", "/api/v1/kinds", "", nil)
	un, _ := r.JSON(t)["unavailable"].(map[string]any)
	if !strings.Contains(fmt.Sprint(un[KindThumbnail]), "ffmpeg is not installed") {
		t.Errorf("kinds: %s", r.Body)
	}
	var n int
	if err := de.DB.R.QueryRow("SELECT count(*) FROM blobs").Scan(&n); err != nil || n != 0 {
		t.Errorf("refused uploads left %d blobs (%v)", n, err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeFFmpeg writes an executable shell script standing in for ffmpeg
// and returns its path: for the paths where the real one would have to
// hang or be killed.
func fakeFFmpeg(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(path, []byte("#!/bin/sh\nPATH=/usr/bin:/bin:$PATH\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCancelAndTimeoutKillFFmpeg: cancelling a running job, or its
// timeout, kills the ffmpeg process.
func TestCancelAndTimeoutKillFFmpeg(t *testing.T) {
	t.Parallel()
	pidDir := t.TempDir()
	// The script records its pid, then becomes a sleep with that pid.
	hang := fakeFFmpeg(t, `echo $$ > "`+pidDir+`/$(date +%s%N)"; exec sleep 120`)
	e := newEnv(t, dbtest.SQLite(t), envOpts{opts: Options{FFmpeg: hang, Timeout: 2 * time.Second}})
	pids := func() []int {
		entries, _ := os.ReadDir(pidDir)
		var out []int
		for _, en := range entries {
			b, err := os.ReadFile(filepath.Join(pidDir, en.Name()))
			var pid int
			if err == nil {
				_, err = fmt.Sscanf(string(b), "%d", &pid)
			}
			if err == nil {
				out = append(out, pid)
			}
		}
		return out
	}
	alive := func(pid int) bool { return syscall.Kill(pid, 0) == nil }
	waitGone := func(pid int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("ffmpeg stand-in %d still runs", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Cancel.
	id := e.upload([]byte("video"), nil)
	m := e.waitVideo(id, "running")
	jobID := int64(m["job_id"].(float64))
	deadline := time.Now().Add(20 * time.Second)
	for len(pids()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("ffmpeg never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.client.Cancel(context.Background(), jobID); err != nil {
		t.Fatal(err)
	}
	if m := e.waitVideo(id, "cancelled"); m["status"] != "failed" || !strings.Contains(fmt.Sprint(m["error"]), "cancelled") {
		t.Errorf("cancelled video: %v, want failed saying cancelled", m)
	}
	waitGone(pids()[0])

	// Timeout: the attempt fails with the timeout and ffmpeg dies.
	id = e.upload([]byte("video"), nil)
	jobID = int64(e.waitVideo(id, "running")["job_id"].(float64))
	deadline = time.Now().Add(30 * time.Second)
	for {
		j := e.job(jobID)
		if len(j.Errors) > 0 {
			if !strings.Contains(j.Errors[0].Error, "timeout") && !strings.Contains(j.Errors[0].Error, "timed out") {
				t.Errorf("first attempt's error %q, want a timeout", j.Errors[0].Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the attempt never timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range pids()[:2] {
		waitGone(pid)
	}
	if _, err := e.client.Cancel(context.Background(), jobID); err != nil && !errors.Is(err, queue.ErrWrongState) {
		t.Fatal(err)
	}
}

func FuzzParseCreate(f *testing.F) {
	for _, s := range []string{"at=1.5&width=200", "at=-1", "width=abc", "at=1e400", "at=NaN&at=2", "filename=../../x", "at=86400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseCreate(q)
		if err != nil {
			var he *httpapi.Error
			if !errors.As(err, &he) {
				t.Fatalf("%q: error %v is not a problem", raw, err)
			}
			return
		}
		if p.atMS < 0 || p.atMS > MaxAtMS || p.width < MinWidth || p.width > MaxWidth || p.filename == "" || strings.ContainsAny(p.filename, "/\\\"") {
			t.Fatalf("%q accepted as %+v", raw, p)
		}
	})
}

func FuzzVideoContentType(f *testing.F) {
	for _, s := range []string{"video/mp4", "application/octet-stream", "video/webm; codecs=vp9", "text/plain", "", "video/", ";;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		mt, err := videoContentType(ct)
		if err == nil && !strings.HasPrefix(mt, "video/") && mt != "application/octet-stream" {
			t.Fatalf("%q accepted as %q", ct, mt)
		}
	})
}
