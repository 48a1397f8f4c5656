package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// mustKiln runs a kiln command that must succeed and returns its stdout.
func mustKiln(t testing.TB, args ...string) string {
	t.Helper()
	r := kiln(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("kiln %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "kiln.db")
	if out := mustKiln(t, "migrate", "--db", db); !strings.Contains(out, db+" migrated from schema version 0 to 1") {
		t.Errorf("first migrate printed %q", out)
	}
	if out := mustKiln(t, "migrate", "--db", "sqlite://"+db); !strings.Contains(out, db+" is up to date (schema version 1)") {
		t.Errorf("second migrate printed %q", out)
	}
}

// decodeJob parses a job printed with --json.
func decodeJob(t *testing.T, out string) *queue.Job {
	t.Helper()
	var j queue.Job
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("output is not a job as JSON: %v\n%s", err, out)
	}
	return &j
}

// decodeJobs parses a job list printed with --json.
func decodeJobs(t *testing.T, out string) []*queue.Job {
	t.Helper()
	var jobs []*queue.Job
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		t.Fatalf("output is not a JSON array of jobs: %v\n%s", err, out)
	}
	if jobs == nil {
		t.Fatalf("output is null, want an array: %s", out)
	}
	return jobs
}

func TestEnqueue(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "kiln.db")

	before := time.Now()
	j := decodeJob(t, mustKiln(t, "enqueue", "sleep", `{"ms":10}`, "--db", db, "--queue", "reports",
		"--priority", "7", "--run-in", "1h", "--max-attempts", "3", "--unique-key", "nightly", "--json"))
	after := time.Now()
	if j.ID <= 0 || j.Kind != "sleep" || j.Queue != "reports" || j.Priority != 7 || j.MaxAttempts != 3 ||
		j.UniqueKey != "nightly" || j.State != queue.StateScheduled || compact(j.Args) != `{"ms":10}` {
		t.Errorf("enqueued job %+v", j)
	}
	if j.RunAt.Before(before.Add(time.Hour).Truncate(time.Microsecond)) || j.RunAt.After(after.Add(time.Hour)) {
		t.Errorf("run_at %s, want an hour after %s", j.RunAt, before)
	}

	out := mustKiln(t, "enqueue", "sleep", `{"ms":20}`, "--db", db, "--queue", "reports", "--unique-key", "nightly")
	if want := fmt.Sprintf("already enqueued (unique key) job %d ", j.ID); !strings.Contains(out, want) {
		t.Errorf("duplicate enqueue printed %q, want %q", out, want)
	}
	got := decodeJob(t, mustKiln(t, "jobs", "show", strconv.FormatInt(j.ID, 10), "--db", db, "--json"))
	if compact(got.Args) != `{"ms":10}` {
		t.Errorf("duplicate enqueue changed the job's args to %s", got.Args)
	}

	out = mustKiln(t, "enqueue", "noop", "--db", db)
	if !regexp.MustCompile(`^enqueued job \d+ \(noop, queue default, available\)\n$`).MatchString(out) {
		t.Errorf("plain enqueue printed %q", out)
	}
	list := decodeJobs(t, mustKiln(t, "jobs", "list", "--db", db, "--json"))
	if len(list) != 2 {
		t.Errorf("%d jobs after two inserts and one duplicate", len(list))
	}
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "invalid JSON: " + string(raw)
	}
	return b.String()
}

func ids(jobs []*queue.Job) []int64 {
	out := make([]int64, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func TestJobsListShow(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := filepath.Join(t.TempDir(), "kiln.db")
	c := openDB(t, db)
	ins := func(kind, q string, runIn time.Duration) int64 {
		r, err := c.Insert(ctx, queue.InsertParams{Kind: kind, Opts: queue.InsertOpts{Queue: q, RunIn: runIn}})
		if err != nil {
			t.Fatal(err)
		}
		return r.Job.ID
	}
	a := ins("noop", "a", 0)
	b := ins("sleep", "b", 0)
	cc := ins("noop", "b", time.Hour)
	d := ins("noop", "a", time.Hour)

	for _, tc := range []struct {
		args []string
		want []int64 // newest first
	}{
		{nil, []int64{d, cc, b, a}},
		{[]string{"--state", "scheduled"}, []int64{d, cc}},
		{[]string{"--kind", "sleep"}, []int64{b}},
		{[]string{"--queue", "a"}, []int64{d, a}},
		{[]string{"--queue", "a", "--state", "available"}, []int64{a}},
		{[]string{"--state", "scheduled,available", "--kind", "noop"}, []int64{d, cc, a}},
		{[]string{"--state", "scheduled", "--state", "available", "--queue", "b"}, []int64{cc, b}},
		{[]string{"--kind", "fail"}, []int64{}},
		{[]string{"--after", strconv.FormatInt(cc, 10)}, []int64{b, a}},
	} {
		args := append([]string{"jobs", "list", "--db", db, "--json"}, tc.args...)
		if got := ids(decodeJobs(t, mustKiln(t, args...))); !slices.Equal(got, tc.want) {
			t.Errorf("jobs list %v: ids %v, want %v", tc.args, got, tc.want)
		}
	}

	// A full page tells how to get the next one.
	r := kiln(t, nil, "jobs", "list", "--db", db, "--limit", "2")
	if r.code != 0 {
		t.Fatal(r)
	}
	if want := fmt.Sprintf("more: kiln jobs list --after %d", cc); !strings.Contains(r.stderr, want) {
		t.Errorf("page of 2 did not say %q: %s", want, r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], strconv.FormatInt(d, 10)+" ") {
		t.Errorf("table of 2 jobs:\n%s", r.stdout)
	}

	j := decodeJob(t, mustKiln(t, "jobs", "show", strconv.FormatInt(b, 10), "--db", db, "--json"))
	if j.ID != b || j.Kind != "sleep" || j.Queue != "b" || j.State != queue.StateAvailable || j.Attempt != 0 {
		t.Errorf("jobs show --json: %+v", j)
	}
	out := mustKiln(t, "jobs", "show", strconv.FormatInt(b, 10), "--db", db)
	for _, want := range []string{"kind", "sleep", "queue", "available", "attempt", "0 of "} {
		if !strings.Contains(out, want) {
			t.Errorf("jobs show does not mention %q:\n%s", want, out)
		}
	}
}

func TestJobsCancelRetry(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := filepath.Join(t.TempDir(), "kiln.db")
	c := openDB(t, db)

	sched := decodeJob(t, mustKiln(t, "enqueue", "noop", "--run-in", "1h", "--db", db, "--json"))
	id := strconv.FormatInt(sched.ID, 10)
	if j := decodeJob(t, mustKiln(t, "jobs", "cancel", id, "--db", db, "--json")); j.State != queue.StateCancelled {
		t.Errorf("cancelled scheduled job is %s", j.State)
	}
	j := decodeJob(t, mustKiln(t, "jobs", "show", id, "--db", db, "--json"))
	if j.State != queue.StateCancelled || j.FinalizedAt == nil || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "cancel") {
		t.Errorf("cancelled job as stored: %+v", j)
	}

	// A job that fails permanently, worked by a short-lived worker.
	f := decodeJob(t, mustKiln(t, "enqueue", "fail", `{"times":5,"permanent":true}`, "--db", db, "--json"))
	w := start(t, procOpts{}, "worker", "--db", db, "--poll-interval", "50ms")
	waitFor(t, 30*time.Second, func() string { return "the fail job to fail\n" + w.stderr.String() }, func() (bool, error) {
		j, err := c.Get(ctx, f.ID)
		return err == nil && j.State == queue.StateFailed, err
	})
	w.signal(syscall.SIGTERM)
	if code := w.wait(20 * time.Second); code != 0 {
		t.Fatalf("worker exited %d\n%s", code, w.stderr)
	}
	id = strconv.FormatInt(f.ID, 10)
	j = decodeJob(t, mustKiln(t, "jobs", "show", id, "--db", db, "--json"))
	if j.Attempt != 1 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "failing on purpose") {
		t.Errorf("failed job: %+v", j)
	}
	j = decodeJob(t, mustKiln(t, "jobs", "retry", id, "--db", db, "--json"))
	if j.State != queue.StateAvailable || j.FinalizedAt != nil || j.Attempt != 1 || j.MaxAttempts < 2 {
		t.Errorf("retried job: %+v", j)
	}
	if out := mustKiln(t, "jobs", "show", id, "--db", db); !strings.Contains(out, "available") || !strings.Contains(out, "failing on purpose") {
		t.Errorf("jobs show after retry:\n%s", out)
	}
}

func TestEnvConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	envDir, flagDir := filepath.Join(dir, "from-env"), filepath.Join(dir, "from-flag")

	r := kiln(t, []string{"KILN_DATA_DIR=" + envDir}, "migrate")
	if r.code != 0 || !strings.Contains(r.stdout, filepath.Join(envDir, "kiln.db")) {
		t.Fatalf("KILN_DATA_DIR: %s", r)
	}
	if _, err := os.Stat(filepath.Join(envDir, "kiln.db")); err != nil {
		t.Errorf("KILN_DATA_DIR: %v", err)
	}

	// A flag wins over the environment.
	r = kiln(t, []string{"KILN_DATA_DIR=" + filepath.Join(dir, "unused")}, "migrate", "--data-dir", flagDir)
	if r.code != 0 || !strings.Contains(r.stdout, filepath.Join(flagDir, "kiln.db")) {
		t.Fatalf("--data-dir over KILN_DATA_DIR: %s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "unused")); !os.IsNotExist(err) {
		t.Errorf("KILN_DATA_DIR was used although --data-dir was given (stat: %v)", err)
	}

	// KILN_DB names the database; KILN_JSON sets a command's --json.
	db := filepath.Join(dir, "env.db")
	r = kiln(t, []string{"KILN_DB=" + db, "KILN_JSON=true"}, "enqueue", "noop")
	if r.code != 0 {
		t.Fatal(r)
	}
	j := decodeJob(t, r.stdout)
	if out := mustKiln(t, "jobs", "show", strconv.FormatInt(j.ID, 10), "--db", db); !strings.Contains(out, "noop") {
		t.Errorf("job enqueued with KILN_DB not in %s:\n%s", db, out)
	}

	// Without either, the data directory is ./kiln-data.
	r = kiln(t, nil, "migrate")
	if r.code != 0 {
		t.Fatal(r)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "kiln-data", "kiln.db")); err != nil {
		t.Errorf("default data dir: %v", err)
	}
}

var listening = regexp.MustCompile(`kiln listening on http://(\S+) \(database: (?:sqlite )?([^)]+)\)`)

// waitListening waits up to 30 s for serve process s to print its
// listening line and returns the submatches of [listening]: the address
// and the database.
func waitListening(t testing.TB, s *proc) []string {
	t.Helper()
	var m []string
	waitFor(t, 30*time.Second, func() string { return "the listening line\n" + s.stderr.String() }, func() (bool, error) {
		if s.exited() {
			return false, fmt.Errorf("serve exited: %s", s.stderr)
		}
		m = listening.FindStringSubmatch(s.stdout.String())
		return m != nil, nil
	})
	return m
}

func TestServe(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := filepath.Join(t.TempDir(), "kiln.db")
	s := start(t, procOpts{}, "serve", "--addr", "127.0.0.1:0", "--db", db)
	m := waitListening(t, s)
	if m[2] != db {
		t.Errorf("serve names the database %q, want %q", m[2], db)
	}
	if !strings.HasPrefix(m[1], "127.0.0.1:") || strings.HasSuffix(m[1], ":0") {
		t.Errorf("serve prints address %q", m[1])
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for path, want := range map[string]string{"/healthz": `"ok"`, "/readyz": `"ready"`} {
		resp, err := client.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}

	// Without a token the API answers 401 and says how to get one;
	// serve printed the command.
	if !strings.Contains(s.stdout.String(), "kiln token create --scope admin --db "+db) {
		t.Errorf("serve does not say how to create a first token:\n%s", s.stdout)
	}
	resp, err := client.Get("http://" + m[1] + "/api/v1/jobs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "kiln token create") {
		t.Errorf("GET /api/v1/jobs without a token: %d %s", resp.StatusCode, body)
	}
	token := strings.TrimSpace(mustKiln(t, "token", "create", "--scope", "write", "--db", db))
	do := func(method, path, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+m[1]+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// serve mounts the API: a job inserted over HTTP is worked, and
	// errors are problems.
	resp = do("POST", "/api/v1/jobs", `{"kind":"noop"}`)
	loc := resp.Header.Get("Location")
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(loc, "/api/v1/jobs/") {
		t.Fatalf("POST /api/v1/jobs: %d, Location %q", resp.StatusCode, loc)
	}
	waitFor(t, 30*time.Second, func() string { return "the API's job to complete\n" + s.stderr.String() }, func() (bool, error) {
		resp := do("GET", loc, "")
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `"state":"completed"`), err
	})
	// A kind added with WithKinds (see testOptions) is enqueued over
	// HTTP like a built-in one and runs.
	resp = do("POST", "/api/v1/jobs", `{"kind":"greet","args":{"name":"Ada"}}`)
	loc = resp.Header.Get("Location")
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/jobs greet: %d", resp.StatusCode)
	}
	waitFor(t, 30*time.Second, func() string { return "the greet job to complete\n" + s.stderr.String() }, func() (bool, error) {
		resp := do("GET", loc, "")
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `"state":"completed"`) && strings.Contains(string(body), `"result":{"greeting":"hello, Ada"}`), err
	})
	resp = do("GET", "/api/v1/nope", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("unknown route: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// A write token may not pause queues.
	resp = do("POST", "/api/v1/queues/default/pause", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("pause with a write token: %d", resp.StatusCode)
	}
	// Metrics need a token too, and count the API's requests by route.
	resp = do("GET", "/metrics", "")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `kiln_http_request_duration_seconds_count{method="POST",route="/api/v1/jobs",status="201"} 2`) {
		t.Errorf("GET /metrics: %d\n%s", resp.StatusCode, body)
	}

	// serve works jobs too.
	c := openDB(t, db)
	r, err := c.Insert(ctx, queue.InsertParams{Kind: "noop"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() string { return "the job to complete\n" + s.stderr.String() }, func() (bool, error) {
		j, err := c.Get(ctx, r.Job.ID)
		return err == nil && j.State == queue.StateCompleted, err
	})

	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM\n%s", code, s.stderr)
	}
	if _, err := client.Get("http://" + m[1] + "/healthz"); err == nil {
		t.Error("still serving after exit")
	}
}

// TestServePortTaken checks that serve fails at once on a taken port,
// without claiming any job first.
func TestServePortTaken(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	db := filepath.Join(t.TempDir(), "kiln.db")
	c := openDB(t, db)
	ids := insertSleeps(ctx, t, c, 1, 10000)

	started := time.Now()
	r := kiln(t, nil, "serve", "--addr", ln.Addr().String(), "--db", db)
	if r.code == 0 || !strings.Contains(r.stderr, "listen on "+ln.Addr().String()) {
		t.Errorf("serve on a taken port: %s", r)
	}
	if took := time.Since(started); took > 5*time.Second {
		t.Errorf("serve took %s to fail", took)
	}
	j, err := c.Get(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if j.State != queue.StateAvailable || j.Attempt != 0 {
		t.Errorf("serve on a taken port touched a job: state %s attempt %d", j.State, j.Attempt)
	}
}

// TestServeDrain: on SIGTERM with --drain-delay, /readyz turns 503 at once
// while /healthz and the API keep answering; then serve exits cleanly.
func TestServeDrain(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "kiln.db")
	s := start(t, procOpts{}, "serve", "--addr", "127.0.0.1:0", "--db", db, "--drain-delay", "3s")
	m := waitListening(t, s)
	client := &http.Client{Timeout: 5 * time.Second}
	status := func(path string) int {
		resp, err := client.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz before shutdown: %d", got)
	}
	s.signal(syscall.SIGTERM)
	waitFor(t, 10*time.Second, func() string { return "/readyz to answer 503\n" + s.stderr.String() }, func() (bool, error) {
		return status("/readyz") == http.StatusServiceUnavailable, nil
	})
	if got := status("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz while draining: %d", got)
	}
	if got := status("/api/v1/jobs"); got != http.StatusUnauthorized {
		t.Errorf("the API while draining: %d, want 401 (still serving)", got)
	}
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d\n%s", code, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), "draining") {
		t.Errorf("no draining log line:\n%s", s.stderr)
	}
}
