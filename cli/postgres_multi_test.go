package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/pgdriver"
)

// The tests in this file run several kiln processes against one
// PostgreSQL schema: exactly-once claiming across processes, a worker
// killed mid-run, fencing of a frozen worker's stale outcome, connections
// cut by the server, and the messages of bad database input.

// workerPool is the pool size of the worker processes of these tests
// (pool_max_conns in their URLs). The engine batches its database work,
// so a few connections suffice, and several tests with three workers each
// run at once against a server with max_connections=100.
const workerPool = "6"

// withParams returns rawURL with the query parameters kv (key, value, …)
// added.
func withParams(t *testing.T, rawURL string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// openPG opens and migrates the database at rawURL in the test process,
// with a client that inserts and inspects jobs but works none.
func openPG(ctx context.Context, t *testing.T, rawURL string) (*queue.Client, *pgdriver.Driver) {
	t.Helper()
	d, err := pgdriver.Open(ctx, rawURL, pgdriver.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return inspectClient(t, d), d
}

// insertRandomSleeps inserts n sleep jobs of lo..hi ms in one batch and
// returns their ids.
func insertRandomSleeps(ctx context.Context, t *testing.T, c *queue.Client, n, lo, hi int) map[int64]bool {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(uint64(n), uint64(hi)))
	ps := make([]queue.InsertParams, n)
	for i := range ps {
		ps[i] = queue.InsertParams{Kind: "sleep", Args: []byte(fmt.Sprintf(`{"ms":%d}`, lo+rng.IntN(hi-lo+1)))}
	}
	res, err := c.InsertMany(ctx, ps)
	if err != nil {
		t.Fatal(err)
	}
	ids := make(map[int64]bool, n)
	for _, r := range res {
		ids[r.Job.ID] = true
	}
	if len(ids) != n {
		t.Fatalf("inserted %d distinct jobs, want %d", len(ids), n)
	}
	return ids
}

// startWorkers starts one `kiln worker` per id on dbURL with extra flags,
// and waits until each has started its engine.
func startWorkers(t *testing.T, dbURL string, ids []string, extra ...string) []*proc {
	t.Helper()
	var ps []*proc
	for _, id := range ids {
		args := append([]string{"worker", "--db", dbURL, "--id", id}, extra...)
		ps = append(ps, start(t, procOpts{}, args...))
	}
	for i, p := range ps {
		waitFor(t, 60*time.Second, func() string { return fmt.Sprintf("worker %s to start\n%s", ids[i], p.stderr) },
			func() (bool, error) {
				if p.exited() {
					return false, fmt.Errorf("worker %s exited\n%s", ids[i], p.stderr)
				}
				return strings.Contains(p.stderr.String(), "job engine started"), nil
			})
	}
	return ps
}

// stopWorkers sends SIGTERM to the workers and checks that each exits 0.
func stopWorkers(t *testing.T, ws ...*proc) {
	t.Helper()
	for _, w := range ws {
		w.signal(syscall.SIGTERM)
	}
	for _, w := range ws {
		if code := w.wait(30 * time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM\n%s", w.name, code, tail(w.stderr.String(), 30))
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitBackendsGone waits until the server has no session left with the
// given application_name: once a killed process's sessions are gone, no
// statement it sent can still commit.
func waitBackendsGone(ctx context.Context, t *testing.T, d *pgdriver.Driver, app string) {
	t.Helper()
	var n int
	waitFor(t, 30*time.Second, func() string { return fmt.Sprintf("the sessions of %s to end (%d left)", app, n) },
		func() (bool, error) {
			err := d.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
			return n == 0, err
		})
}

// TestPostgresThreeWorkersExactlyOnce runs 20,000 jobs on three worker
// processes sharing one schema and checks that each job was claimed once,
// and that the work was shared.
func TestPostgresThreeWorkersExactlyOnce(t *testing.T) {
	t.Parallel()
	const total = 20000
	base, _ := postgresURL(t)
	ctx := testCtx(t)
	c, _ := openPG(ctx, t, base)
	dbURL := withParams(t, base, "pool_max_conns", workerPool)
	ids := []string{"w1", "w2", "w3"}
	// The workers start first, so that all three are competing when the
	// jobs appear.
	ws := startWorkers(t, dbURL, ids, "--queues", "default=100")
	began := time.Now()
	inserted := insertRandomSleeps(ctx, t, c, total, 1, 5)
	waitAllCompleted(ctx, t, c, total, 100*time.Second, ws...)
	t.Logf("%d jobs completed in %s", total, time.Since(began).Round(time.Millisecond))

	jobs := allJobs(ctx, t, c, queue.ListParams{})
	if len(jobs) != total {
		t.Fatalf("%d jobs in the database, want %d", len(jobs), total)
	}
	perWorker := map[string]int{}
	ec := &errorCap{t: t}
	defer ec.done()
	for _, j := range jobs {
		if !inserted[j.ID] {
			ec.errorf("job %d was never inserted", j.ID)
		}
		if j.State != queue.StateCompleted || j.Attempt != 1 || len(j.Errors) != 0 {
			ec.errorf("job %d: state %s attempt %d errors %+v; want completed on attempt 1 without errors", j.ID, j.State, j.Attempt, j.Errors)
		}
		perWorker[j.AttemptedBy]++
	}
	t.Logf("jobs per worker: %v", perWorker)
	for k := range perWorker {
		if !slices.Contains(ids, k) {
			t.Errorf("jobs attempted by unknown worker %q: %v", k, perWorker)
		}
	}
	for _, id := range ids {
		if perWorker[id] == 0 {
			t.Errorf("worker %s completed no job: %v", id, perWorker)
		}
	}
	stopWorkers(t, ws...)
}

// TestPostgresWorkerKilled SIGKILLs one of three workers mid-run and
// checks that the others finish every job, running again exactly the
// jobs the dead one held, once more each.
func TestPostgresWorkerKilled(t *testing.T) {
	t.Parallel()
	const total = 6000
	base, schema := postgresURL(t)
	ctx := testCtx(t)
	c, d := openPG(ctx, t, base)
	ids := []string{"w1", "w2", "w3"}
	// w2's sessions carry an application_name of their own, so that the
	// test can tell when the server has ended all of them.
	app2 := "kiln_w2_" + schema
	var ws []*proc
	for _, id := range ids {
		u := withParams(t, base, "pool_max_conns", workerPool)
		if id == "w2" {
			u = withParams(t, u, "application_name", app2)
		}
		ws = append(ws, startWorkers(t, u, []string{id}, "--lease", "3s", "--queues", "default=100")...)
	}
	inserted := insertRandomSleeps(ctx, t, c, total, 10, 50)

	waitCompleted(ctx, t, c, total*20/100, 60*time.Second, ws...)
	killed := time.Now()
	ws[1].kill()
	// A claim w2 sent just before it died may still commit on the server;
	// its jobs are w2's too. Once its sessions are gone, nothing more can.
	waitBackendsGone(ctx, t, d, app2)
	held := heldJobs(ctx, t, c, "w2", "w2")

	// The rescuer runs on the leader; if w2 led, the others take over
	// once its leadership expires (10s).
	waitAllCompleted(ctx, t, c, total, 90*time.Second, ws[0], ws[2])
	var leaders []string
	for i, w := range ws {
		if strings.Contains(w.stderr.String(), "became leader") {
			leaders = append(leaders, ids[i])
		}
	}
	t.Logf("all jobs completed %s after the kill; leaders during the run: %v", time.Since(killed).Round(time.Millisecond), leaders)

	rerun := checkRanOnceMore(ctx, t, c, total, inserted, held, "w2", "w2")
	t.Logf("%d jobs ran twice", rerun)
	rescued := strings.Contains(ws[0].stderr.String(), "rescued jobs") || strings.Contains(ws[2].stderr.String(), "rescued jobs")
	if !rescued {
		t.Errorf("no surviving worker logged the rescue")
	}
	stopWorkers(t, ws[0], ws[2])
}

// TestPostgresFencingAcrossProcesses freezes a worker process while it
// runs a job, lets a second process rescue and finish the job, then thaws
// the first: its stale outcome must be refused and leave the second
// attempt's outcome intact.
func TestPostgresFencingAcrossProcesses(t *testing.T) {
	t.Parallel()
	base, _ := postgresURL(t)
	ctx := testCtx(t)
	c, _ := openPG(ctx, t, base)
	dbURL := withParams(t, base, "pool_max_conns", workerPool)
	// The job sleeps 4s. A is frozen within its first second; B, started
	// after that, takes leadership once A's expires (10s), rescues the
	// job and runs it for 4s. When A is thawed, its sleep's deadline has
	// long passed, so its handler returns at once (or its heartbeat finds
	// the lease lost and cancels it): either way A then tries to record a
	// stale outcome.
	res, err := c.Insert(ctx, queue.InsertParams{Kind: "sleep", Args: []byte(`{"ms":4000}`)})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Job.ID
	get := func() *queue.Job {
		t.Helper()
		j, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}

	a := startWorkers(t, dbURL, []string{"A"}, "--lease", "3s", "--queues", "default=1")[0]
	var j *queue.Job
	waitFor(t, 30*time.Second, func() string { return fmt.Sprintf("A to claim the job: %+v\n%s", j, a.stderr) },
		func() (bool, error) {
			j = get()
			return j.State == queue.StateRunning && j.AttemptedBy == "A", nil
		})
	a.signal(syscall.SIGSTOP)
	// Continue A in any case, so that its cleanup can kill and reap it.
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })
	if j = get(); j.State != queue.StateRunning || j.Attempt != 1 {
		t.Fatalf("A was frozen after its attempt ended: %+v", j)
	}

	b := startWorkers(t, dbURL, []string{"B"}, "--lease", "3s", "--queues", "default=1")[0]
	sawRunningB := false
	waitFor(t, 60*time.Second, func() string { return fmt.Sprintf("B to complete the job: %+v\n%s", j, b.stderr) },
		func() (bool, error) {
			if b.exited() {
				return false, fmt.Errorf("B exited\n%s", b.stderr)
			}
			j = get()
			if j.State == queue.StateRunning && j.AttemptedBy == "B" && j.Attempt == 2 {
				sawRunningB = true
			}
			return j.State == queue.StateCompleted, nil
		})
	if !sawRunningB {
		t.Errorf("B's 4s attempt was never seen running as attempt 2 by B: %+v", j)
	}
	// B's outcome as recorded. A stale write that slipped past the fence
	// would change it even if A also reported success: its finished time
	// (and, on the lease-lost path, the state and errors) would differ.
	final := get()
	checkB := func(when string) {
		t.Helper()
		j := get()
		if j.State != queue.StateCompleted || j.Attempt != 2 || j.AttemptedBy != "B" || j.Progress != 100 {
			t.Fatalf("%s: job state %s attempt %d by %q progress %d; want completed on attempt 2 by B", when, j.State, j.Attempt, j.AttemptedBy, j.Progress)
		}
		if len(j.Errors) != 1 || j.Errors[0].Attempt != 1 || !strings.Contains(j.Errors[0].Error, "lease") || !strings.Contains(j.Errors[0].Error, "A") {
			t.Fatalf("%s: job errors %+v; want one, for attempt 1, naming A's expired lease", when, j.Errors)
		}
		if j.FinalizedAt == nil || final.FinalizedAt == nil || !j.FinalizedAt.Equal(*final.FinalizedAt) || string(j.Result) != string(final.Result) {
			t.Fatalf("%s: job finalized at %v with result %s; B finished it at %v with result %s", when, j.FinalizedAt, j.Result, final.FinalizedAt, final.Result)
		}
	}
	checkB("after B finished")

	a.signal(syscall.SIGCONT)
	const refused, lost = "job outcome refused", "job lease lost"
	waitFor(t, 30*time.Second, func() string { return "A to try to record its stale outcome\n" + a.stderr.String() },
		func() (bool, error) {
			if a.exited() {
				return false, fmt.Errorf("A exited\n%s", a.stderr)
			}
			return strings.Contains(a.stderr.String(), refused), nil
		})
	t.Logf("A logged %q; %q too: %v", refused, lost, strings.Contains(a.stderr.String(), lost))
	checkB("after A's stale outcome")
	stopWorkers(t, a, b)
	checkB("after both workers stopped")
}

// TestPostgresConnectionsCut has the server terminate every session of two
// busy workers, twice: the workers must survive, log the failure a bounded
// number of times and its recovery, and finish every job.
func TestPostgresConnectionsCut(t *testing.T) {
	t.Parallel()
	const total = 5000
	base, schema := postgresURL(t)
	ctx := testCtx(t)
	c, d := openPG(ctx, t, base)
	// Tests run in parallel, each in a schema of its own, all as the same
	// user and all with application_name "kiln" by default; the workers
	// here get an application_name naming this test's schema, and only
	// sessions with exactly that name are terminated. The test's own
	// client keeps the default, so its pool is spared.
	app := "kiln_cut_" + schema
	dbURL := withParams(t, base, "pool_max_conns", workerPool, "application_name", app)
	ids := []string{"c1", "c2"}
	ws := startWorkers(t, dbURL, ids, "--lease", "5s", "--queues", "default=10")
	insertRandomSleeps(ctx, t, c, total, 5, 20)

	cut := func(after int64) {
		t.Helper()
		done := waitCompleted(ctx, t, c, after, 60*time.Second)
		var killed int
		if err := d.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE pid <> pg_backend_pid() AND datname = current_database() AND application_name = $1`, app).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		t.Logf("terminated %d sessions with %d jobs completed", killed, done)
		if killed < 2 {
			t.Fatalf("terminated %d sessions; want at least each worker's LISTEN connection", killed)
		}
	}
	cut(total / 10)
	// The second cut comes a second later, while the workers are still
	// re-establishing sessions and retrying what the first one broke.
	time.Sleep(time.Second)
	n, err := counts(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if n[queue.StateCompleted] >= total*9/10 {
		t.Fatalf("%d of %d jobs completed a second after the first cut; too few left for the second cut to land mid-run", n[queue.StateCompleted], total)
	}
	cut(0)

	// Jobs whose claim committed but whose answer was lost are rescued
	// when their lease (5s) expires.
	waitAllCompleted(ctx, t, c, total, 90*time.Second, ws...)
	jobs := allJobs(ctx, t, c, queue.ListParams{})
	if len(jobs) != total {
		t.Fatalf("%d jobs in the database, want %d", len(jobs), total)
	}
	rerun := 0
	for _, j := range jobs {
		if j.Attempt > 1 {
			rerun++
		}
	}
	t.Logf("%d jobs ran more than once", rerun)

	for i, w := range ws {
		id := ids[i]
		if w.exited() {
			t.Errorf("%s exited after the connections were cut\n%s", id, w.stderr)
			continue
		}
		log := w.stderr.String()
		var failed, recovered, lostListen, listening int
		for _, line := range strings.Split(log, "\n") {
			switch {
			case strings.Contains(line, "failed; retrying with backoff"):
				failed++
				t.Logf("%s: %s", id, line)
			case strings.Contains(line, " recovered"):
				recovered++
			case strings.Contains(line, "lost the connection listening for job notifications"):
				lostListen++
			case strings.Contains(line, "listening for job notifications again"):
				listening++
			}
		}
		t.Logf("%s: %d failure lines, %d recoveries, LISTEN lost %d and restored %d", id, failed, recovered, lostListen, listening)
		if failed+lostListen == 0 || failed+lostListen > 20 {
			t.Errorf("%s logged %d connection failures; want 1 to 20\n%s", id, failed+lostListen, tail(log, 40))
		}
		if recovered+listening == 0 {
			t.Errorf("%s logged no recovery\n%s", id, tail(log, 40))
		}
		// Each cut ends the LISTEN session, which is re-established.
		if lostListen < 1 || listening < 1 {
			t.Errorf("%s: LISTEN connection lost %d times and restored %d times; want both at least once\n%s", id, lostListen, listening, tail(log, 40))
		}
		// A loop that logged a failure logs its recovery once it works
		// again; all of them have worked since (every job completed).
		if failed > recovered {
			t.Errorf("%s logged %d failures but %d recoveries\n%s", id, failed, recovered, tail(log, 40))
		}
		if strings.Contains(log, "panic") {
			t.Errorf("%s panicked\n%s", id, log)
		}
	}
	stopWorkers(t, ws...)
}

// TestPostgresBadInput runs commands against unusable PostgreSQL
// databases: each must fail at once with a message saying what is wrong,
// without a panic and without showing the password.
func TestPostgresBadInput(t *testing.T) {
	t.Parallel()
	base := os.Getenv("KILN_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("KILN_TEST_DATABASE_URL is not set; set it to a PostgreSQL URL to run the CLI's PostgreSQL tests")
	}
	ctx := testCtx(t)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	bu, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	hostPort := bu.Host
	dbName := strings.TrimPrefix(bu.Path, "/")

	// A role that may log in but has no privilege on a schema postgres owns.
	var b [6]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	// One schema the role may not even use, and one it may use but not
	// create tables in.
	role, npSchema, usageSchema := "kiln_noperm_"+suffix, "kiln_noperm_s_"+suffix, "kiln_noperm_u_"+suffix
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"CREATE SCHEMA " + npSchema,
		"CREATE SCHEMA " + usageSchema,
		"GRANT USAGE ON SCHEMA " + usageSchema + " TO " + role,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, q := range []string{
			"DROP SCHEMA IF EXISTS " + npSchema + " CASCADE", "DROP SCHEMA IF EXISTS " + usageSchema + " CASCADE", "DROP ROLE IF EXISTS " + role,
		} {
			if _, err := admin.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	roleURL := fmt.Sprintf("postgres://%s@%s/%s", role, hostPort, dbName)
	noPermURL := withParams(t, roleURL, "sslmode", "disable", "kiln_schema", npSchema)
	usageOnlyURL := withParams(t, roleURL, "sslmode", "disable", "kiln_schema", usageSchema)

	// A schema migrated by a newer kiln.
	newerURL, newerSchema := postgresURL(t)
	mustKiln(t, "migrate", "--db", newerURL)
	if _, err := admin.Exec(ctx, "INSERT INTO "+newerSchema+".kiln_migrations (version, applied_at) VALUES (999, now())"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want []string // each must appear in stderr (case-insensitive)
	}{
		{"unreachable", []string{"migrate", "--db", "postgres://postgres:s3cret@127.0.0.1:1/test?sslmode=disable"},
			[]string{"127.0.0.1:1", "unreachable", "connection refused"}},
		{"unreachable worker", []string{"worker", "--db", "postgres://postgres:s3cret@127.0.0.1:1/test?sslmode=disable"},
			[]string{"127.0.0.1:1", "unreachable"}},
		{"no such database", []string{"migrate", "--db", withParams(t, fmt.Sprintf("postgres://postgres:s3cret@%s/no_such_db_xyz", hostPort), "sslmode", "disable")},
			[]string{"no_such_db_xyz", "does not exist"}},
		{"malformed URL", []string{"migrate", "--db", "postgres://%zz"},
			[]string{"invalid database url"}},
		{"malformed URL with password", []string{"jobs", "list", "--db", "postgres://postgres:s3cret@127.0.0.1:port/test"},
			[]string{"invalid database url"}},
		{"no permission", []string{"migrate", "--db", noPermURL},
			[]string{"permission denied", role}},
		{"usage but no create permission", []string{"migrate", "--db", usageOnlyURL},
			[]string{"permission denied", role, "may not create tables in schema " + usageSchema}},
		{"newer schema: migrate", []string{"migrate", "--db", newerURL},
			[]string{"schema version 999", "newer than this kiln"}},
		{"newer schema: jobs list", []string{"jobs", "list", "--db", newerURL},
			[]string{"schema version 999", "newer than this kiln"}},
		{"newer schema: worker", []string{"worker", "--db", newerURL},
			[]string{"schema version 999", "newer than this kiln"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			p := start(t, procOpts{}, tc.args...)
			code := p.wait(15 * time.Second)
			r := result{code: code, stdout: p.stdout.String(), stderr: p.stderr.String()}
			if took := time.Since(began); took > 15*time.Second {
				t.Errorf("took %s", took)
			}
			if r.code == 0 {
				t.Fatalf("exit 0, want a failure\n%s", r)
			}
			t.Logf("exit %d: %s", r.code, strings.TrimSpace(r.stderr))
			noPanic(t, r)
			lower := strings.ToLower(r.stderr)
			for _, w := range tc.want {
				if !strings.Contains(lower, strings.ToLower(w)) {
					t.Errorf("stderr does not mention %q\n%s", w, r)
				}
			}
			if strings.Contains(r.stderr+r.stdout, "s3cret") {
				t.Errorf("output shows the password\n%s", r)
			}
		})
	}
}
