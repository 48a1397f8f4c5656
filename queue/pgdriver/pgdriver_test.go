package pgdriver_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/pgdriver"
	"github.com/kilnhq/kiln/queue/queuetest"
)

// testURL returns the test server's URL, or skips the test.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("KILN_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("KILN_TEST_DATABASE_URL is not set; set it to a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL driver tests")
	}
	return u
}

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// admin returns a connection to the test database for setup and cleanup.
func admin(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// freshSchema returns the name of a schema that is dropped when the test
// ends (it is created by the driver's Migrate).
func freshSchema(t testing.TB) string {
	t.Helper()
	s := randomName("kiln_test_")
	url := testURL(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("drop schema %s: %v", s, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", s, err)
		}
	})
	return s
}

// openDriver opens a driver on a fresh schema, migrated.
func openDriver(t testing.TB, opts pgdriver.Options) *pgdriver.Driver {
	t.Helper()
	if opts.Schema == "" {
		opts.Schema = freshSchema(t)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = 6 // many subtests run in parallel against one server
	}
	d, err := pgdriver.Open(context.Background(), testURL(t), opts)
	return queuetest.Migrated(t, d, err)
}

func TestConformance(t *testing.T) {
	testURL(t)
	queuetest.Run(t, func(t *testing.T) queue.Driver {
		return openDriver(t, pgdriver.Options{})
	})
}

// TestConformancePollOnly runs the suite without LISTEN/NOTIFY.
func TestConformancePollOnly(t *testing.T) {
	testURL(t)
	if testing.Short() {
		t.Skip("short")
	}
	queuetest.Run(t, func(t *testing.T) queue.Driver {
		return openDriver(t, pgdriver.Options{PollOnly: true})
	})
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		opts    pgdriver.Options
		wantErr string
		check   func(t *testing.T, c *pgdriver.Config)
	}{
		{name: "plain", url: "postgres://u:pw@db.example:6543/kiln?sslmode=disable", check: func(t *testing.T, c *pgdriver.Config) {
			cc := c.Pool.ConnConfig
			if cc.Host != "db.example" || cc.Port != 6543 || cc.Database != "kiln" || cc.User != "u" || cc.Password != "pw" {
				t.Errorf("conn config %s:%d/%s user %s", cc.Host, cc.Port, cc.Database, cc.User)
			}
			if c.Pool.MaxConns != pgdriver.DefaultMaxConns || cc.ConnectTimeout != pgdriver.DefaultConnectTimeout {
				t.Errorf("defaults: max conns %d, connect timeout %s", c.Pool.MaxConns, cc.ConnectTimeout)
			}
			if c.Opts.PollOnly || c.Opts.Schema != "" {
				t.Errorf("opts %+v", c.Opts)
			}
			if _, ok := cc.RuntimeParams["search_path"]; ok {
				t.Errorf("search_path set without a schema")
			}
		}},
		{name: "postgresql scheme and kiln parameters", url: "postgresql://u@h/db?kiln_poll_only=true&kiln_schema=My%20Jobs&sslmode=disable", check: func(t *testing.T, c *pgdriver.Config) {
			if !c.Opts.PollOnly || c.Opts.Schema != "My Jobs" {
				t.Errorf("opts %+v", c.Opts)
			}
			if got := c.Pool.ConnConfig.RuntimeParams["search_path"]; got != `"My Jobs"` {
				t.Errorf("search_path %q", got)
			}
			for k := range c.Pool.ConnConfig.RuntimeParams {
				if strings.HasPrefix(k, "kiln_") {
					t.Errorf("kiln parameter %s passed to the server", k)
				}
			}
		}},
		{name: "options", url: "postgres://h/db", opts: pgdriver.Options{Schema: "s", MaxConns: 3, ConnectTimeout: time.Second}, check: func(t *testing.T, c *pgdriver.Config) {
			if c.Pool.MaxConns != 3 || c.Pool.ConnConfig.ConnectTimeout != time.Second || c.Opts.Schema != "s" {
				t.Errorf("max conns %d timeout %s schema %q", c.Pool.MaxConns, c.Pool.ConnConfig.ConnectTimeout, c.Opts.Schema)
			}
		}},
		{name: "URL settings win", url: "postgres://h/db?pool_max_conns=7&connect_timeout=3&kiln_poll_only=false", opts: pgdriver.Options{MaxConns: 3, PollOnly: true}, check: func(t *testing.T, c *pgdriver.Config) {
			if c.Pool.MaxConns != 7 || c.Pool.ConnConfig.ConnectTimeout != 3*time.Second || c.Opts.PollOnly {
				t.Errorf("max conns %d timeout %s poll only %v", c.Pool.MaxConns, c.Pool.ConnConfig.ConnectTimeout, c.Opts.PollOnly)
			}
		}},
		{name: "key value", url: "host=h dbname=db user=u pool_max_conns=5", check: func(t *testing.T, c *pgdriver.Config) {
			if c.Pool.ConnConfig.Host != "h" || c.Pool.MaxConns != 5 {
				t.Errorf("host %s max conns %d", c.Pool.ConnConfig.Host, c.Pool.MaxConns)
			}
		}},
		{name: "empty", url: "  ", wantErr: "empty database URL"},
		{name: "bad poll only", url: "postgres://h/db?kiln_poll_only=maybe", wantErr: "kiln_poll_only must be true or false"},
		{name: "unknown kiln parameter", url: "postgres://h/db?kiln_polll=1", wantErr: `unknown parameter "kiln_polll"`},
		{name: "other scheme", url: "mysql://h/db", wantErr: `unsupported URL scheme "mysql"`},
		{name: "bad port", url: "postgres://u:s3cret@h:notaport/db", wantErr: "invalid database URL"},
		{name: "bad sslmode", url: "postgres://u:s3cret@h/db?sslmode=sometimes", wantErr: "invalid database URL"},
		{name: "schema too long", url: "postgres://h/db", opts: pgdriver.Options{Schema: strings.Repeat("s", 64)}, wantErr: "1-63 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pgdriver.ParseURL(tc.url, tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseURL(%q): %v, want an error containing %q", tc.url, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tc.url, err)
			}
			tc.check(t, c)
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h/db":              "postgres://u:xxxxx@h/db",
		"postgres://u@h/db":                     "postgres://u@h/db",
		"postgres://h/db?password=secret&x=1":   "postgres://h/db?password=xxxxx&x=1",
		"host=h password=secret dbname=db":      "host=h password=xxxxx dbname=db",
		"postgresql://u:p%40ss:w@h:5432/db?a=b": "postgresql://u:xxxxx@h:5432/db?a=b",
	} {
		if got := pgdriver.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUnreachable: a server that does not answer yields a clear error,
// fast, naming host:port, without the password.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := pgdriver.Open(context.Background(), "postgres://kiln:s3cret@127.0.0.1:1/kiln?sslmode=disable", pgdriver.Options{ConnectTimeout: 2 * time.Second})
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "127.0.0.1:1") || !strings.Contains(msg, "unreachable") || strings.Contains(msg, "s3cret") {
		t.Errorf("error %q: want host:port and 'unreachable', without the password", msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open took %s", d)
	}
}

// TestConnectTimeout: a server that accepts TCP but never answers is
// given up on after the connect timeout.
func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	ln := listenSilently(t)
	start := time.Now()
	_, err := pgdriver.Open(context.Background(), "postgres://kiln@"+ln+"/kiln?sslmode=disable", pgdriver.Options{ConnectTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("Open of a silent server succeeded")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Open took %s, want about the connect timeout", d)
	}
	if !strings.Contains(err.Error(), ln) {
		t.Errorf("error %q does not name %s", err, ln)
	}
}

func TestBadCredentials(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	u.Path = "/" + randomName("no_such_db_")
	u.RawQuery = q.Encode()
	_, err = pgdriver.Open(context.Background(), u.String(), pgdriver.Options{})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Open of a missing database: %v, want 'does not exist'", err)
	}
}

// TestSchemaTooNew: a schema migrated by a newer kiln is refused.
func TestSchemaTooNew(t *testing.T) {
	t.Parallel()
	d := openDriver(t, pgdriver.Options{})
	ctx := context.Background()
	_, latest, err := d.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pool().Exec(ctx, "INSERT INTO kiln_migrations (version, applied_at) VALUES ($1, now())", latest+1); err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(ctx); !errors.Is(err, queue.ErrSchemaTooNew) {
		t.Errorf("Migrate: %v, want ErrSchemaTooNew", err)
	}
	cur, _, err := d.SchemaVersion(ctx)
	if err != nil || cur != latest+1 {
		t.Errorf("SchemaVersion: %d %v", cur, err)
	}
}

// TestSchemaVersionUnmigrated: a database without kiln's tables is at
// version 0, not an error.
func TestSchemaVersionUnmigrated(t *testing.T) {
	t.Parallel()
	d, err := pgdriver.Open(context.Background(), testURL(t), pgdriver.Options{Schema: freshSchema(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cur, latest, err := d.SchemaVersion(context.Background())
	if err != nil || cur != 0 || latest < 1 {
		t.Errorf("SchemaVersion: %d %d %v, want 0 and the latest", cur, latest, err)
	}
}

// TestNoPermission: a role that may not create tables in the schema gets
// an error that says so.
func TestNoPermission(t *testing.T) {
	t.Parallel()
	conn := admin(t)
	ctx := context.Background()
	schema := freshSchema(t)
	role := randomName("kiln_noperm_")
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN"); err != nil {
		t.Skipf("cannot create a role on the test server: %v", err)
	}
	t.Cleanup(func() {
		if _, err := conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	u, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	d, err := pgdriver.Open(ctx, u.String(), pgdriver.Options{Schema: schema})
	if err != nil {
		t.Skipf("cannot connect as %s (the test server may not trust local roles): %v", role, err)
	}
	defer d.Close()
	err = d.Migrate(ctx)
	if err == nil {
		t.Fatal("Migrate as a role without privileges succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"permission denied", role, "CREATE on schema " + schema} {
		if !strings.Contains(msg, want) {
			t.Errorf("Migrate error %q does not contain %q", msg, want)
		}
	}
}

// listenSilently returns the address of a TCP listener that accepts
// connections and never answers.
func listenSilently(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().String()
}

// TestNotifyAcrossProcesses: a job inserted through one driver (another
// process, in effect) wakes a worker on another at once, with polling
// too slow to matter, also after the LISTEN connection was killed.
func TestNotifyAcrossProcesses(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	worker := openDriver(t, pgdriver.Options{Schema: schema})
	inserter := openDriver(t, pgdriver.Options{Schema: schema})
	ctx := t.Context()

	started := make(chan int64, 100)
	w := queue.NewWorkers()
	w.HandleFunc("job", func(_ context.Context, j *queue.Job) error {
		started <- j.ID
		return nil
	})
	wc, err := queue.New(queue.Config{Driver: worker, Workers: w, PollInterval: time.Hour,
		Queues: map[string]queue.QueueConfig{"q": {MaxWorkers: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = wc.Stop(sctx)
	})
	ic, err := queue.New(queue.Config{Driver: inserter, Workers: w})
	if err != nil {
		t.Fatal(err)
	}
	insertAndWait := func(what string) time.Duration {
		t.Helper()
		begin := time.Now()
		res, err := ic.Insert(ctx, queue.InsertParams{Kind: "job", Opts: queue.InsertOpts{Queue: "q"}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-started:
			if id != res.Job.ID {
				t.Fatalf("%s: job %d started, want %d", what, id, res.Job.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: job %d was not picked up within 10s (polling is hourly)", what, res.Job.ID)
		}
		return time.Since(begin)
	}
	// The worker's watcher connects in the background; the first job may
	// wait for it.
	insertAndWait("first job")
	var worst time.Duration
	for range 20 {
		worst = max(worst, insertAndWait("job"))
	}
	t.Logf("slowest pickup across drivers: %s", worst)
	if worst > time.Second {
		t.Errorf("slowest pickup %s, want well under a second", worst)
	}

	// Kill the LISTEN connection; the watcher reconnects and the next job
	// is still picked up without polling.
	conn := admin(t)
	tag, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	 WHERE query = $1 AND pid <> pg_backend_pid()`, "LISTEN "+pgx.Identifier{"kiln_jobs." + schema}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 1 {
		t.Fatalf("terminated %d LISTEN connections, want 1", tag.RowsAffected())
	}
	time.Sleep(50 * time.Millisecond)
	insertAndWait("job after the LISTEN connection was killed")
	insertAndWait("next job")
}

// TestInsertPgxTx: jobs inserted in a caller's pgx.Tx exist if and only if
// it commits, in batches large enough for COPY too.
func TestInsertPgxTx(t *testing.T) {
	t.Parallel()
	d := openDriver(t, pgdriver.Options{})
	ctx := t.Context()
	w := queue.NewWorkers()
	w.HandleFunc("job", func(context.Context, *queue.Job) error { return nil })
	c, err := queue.New(queue.Config{Driver: d, Workers: w})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2500} {
		ps := make([]queue.InsertParams, n)
		for i := range ps {
			ps[i] = queue.InsertParams{Kind: "job", Args: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
		}
		for _, commit := range []bool{false, true} {
			tx, err := d.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.InsertTx(ctx, tx, ps...)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != n {
				t.Fatalf("%d results for %d jobs", len(res), n)
			}
			for i := 1; i < n; i++ {
				if res[i].Job.ID <= res[i-1].Job.ID {
					t.Fatalf("ids out of insertion order: %d then %d", res[i-1].Job.ID, res[i].Job.ID)
				}
			}
			if commit {
				err = tx.Commit(ctx)
			} else {
				err = tx.Rollback(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range []int{0, n - 1} {
				j, err := c.Get(ctx, res[i].Job.ID)
				switch {
				case commit && err != nil:
					t.Errorf("job %d of a committed batch of %d: %v", i, n, err)
				case commit && string(j.Args) != `{"i": `+strconv.Itoa(i)+`}`:
					t.Errorf("job %d args %s", i, j.Args)
				case !commit && !errors.Is(err, queue.ErrNotFound):
					t.Errorf("job %d of a rolled back batch of %d: %v, want not found", i, n, err)
				}
			}
		}
	}
	if _, err := d.InsertMany(ctx, "not a tx", time.Now(), []queue.Row{{Kind: "job"}}); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("InsertMany with a string for tx: %v, want ErrInvalid", err)
	}
}

// TestUniqueAcrossDrivers: clients on separate pools inserting the same
// unique job at once create exactly one.
func TestUniqueAcrossDrivers(t *testing.T) {
	t.Parallel()
	schema := freshSchema(t)
	drivers := []*pgdriver.Driver{openDriver(t, pgdriver.Options{Schema: schema}), openDriver(t, pgdriver.Options{Schema: schema})}
	ctx := t.Context()
	w := queue.NewWorkers()
	w.HandleFunc("job", func(context.Context, *queue.Job) error { return nil })
	const per = 8
	ids := make(chan int64, 2*per)
	errs := make(chan error, 2*per)
	for _, d := range drivers {
		c, err := queue.New(queue.Config{Driver: d, Workers: w})
		if err != nil {
			t.Fatal(err)
		}
		for range per {
			go func() {
				res, err := c.InsertMany(ctx, []queue.InsertParams{
					{Kind: "job"},
					{Kind: "job", Opts: queue.InsertOpts{UniqueKey: "the-one"}},
					{Kind: "job"},
				})
				if err != nil {
					errs <- err
					return
				}
				ids <- res[1].Job.ID
			}()
		}
	}
	seen := map[int64]bool{}
	for range 2 * per {
		select {
		case err := <-errs:
			t.Fatal(err)
		case id := <-ids:
			seen[id] = true
		}
	}
	if len(seen) != 1 {
		t.Errorf("concurrent unique inserts returned %d distinct jobs, want 1", len(seen))
	}
}

// TestUnstorableInput: JSON PostgreSQL cannot store is invalid input, not
// a database failure.
func TestUnstorableInput(t *testing.T) {
	t.Parallel()
	d := openDriver(t, pgdriver.Options{})
	w := queue.NewWorkers()
	w.HandleFunc("job", func(context.Context, *queue.Job) error { return nil })
	c, err := queue.New(queue.Config{Driver: d, Workers: w})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Insert(t.Context(), queue.InsertParams{Kind: "job", Args: []byte(`{"s":"a\u0000b"}`)})
	if !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("insert of a \\u0000 escape: %v, want ErrInvalid", err)
	}
}

// TestFinishSameJobTwice: two outcomes for one lease in one batch apply
// once, in order, as if written one after the other.
func TestFinishSameJobTwice(t *testing.T) {
	t.Parallel()
	d := openDriver(t, pgdriver.Options{})
	ctx := t.Context()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	res, err := d.InsertMany(ctx, nil, now, []queue.Row{{Kind: "job", Queue: "q", Args: []byte(`{}`), State: queue.StateAvailable, MaxAttempts: 3, RunAt: now}})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := d.Claim(ctx, queue.ClaimParams{Queue: "q", Limit: 5, Now: now, LeaseUntil: now.Add(time.Minute), Token: 7, ClientID: "c"})
	if err != nil || len(jobs) != 1 || jobs[0].ID != res[0].Job.ID {
		t.Fatalf("claim: %v %v", jobs, err)
	}
	l := queue.Lease{ID: jobs[0].ID, Attempt: jobs[0].Attempt, Token: jobs[0].LeaseToken}
	applied, err := d.Finish(ctx, []queue.Outcome{
		{Lease: l, State: queue.StateCompleted, At: now, Result: []byte(`1`)},
		{Lease: l, State: queue.StateFailed, At: now},
	})
	if err != nil || len(applied) != 2 || !applied[0] || applied[1] {
		t.Fatalf("Finish: %v %v, want [true false]", applied, err)
	}
	held, err := d.ExtendLeases(ctx, []queue.Lease{l, l}, now.Add(time.Hour))
	if err != nil || held[0] || held[1] {
		t.Errorf("ExtendLeases of a finished job: %v %v", held, err)
	}
	if j, err := d.GetJob(ctx, l.ID); err != nil || j.State != queue.StateCompleted {
		t.Errorf("job after Finish: %+v %v", j, err)
	}
}

// TestDBLeavesConnectionsToTheEngine: however busy the database/sql handle
// is, it holds at most three quarters of the pool, so the engine's own
// queries still get connections.
func TestDBLeavesConnectionsToTheEngine(t *testing.T) {
	t.Parallel()
	d := openDriver(t, pgdriver.Options{MaxConns: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := d.DB()
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer tx.Rollback()
			<-release
		})
	}
	defer wg.Wait()
	defer close(release)
	for db.Stats().InUse < 6 {
		if ctx.Err() != nil {
			t.Fatalf("database/sql holds %d connections, want 6", db.Stats().InUse)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := db.Stats(); st.InUse != 6 || st.MaxOpenConnections != 6 {
		t.Errorf("database/sql stats %+v: want 6 in use, at most 6 open", st)
	}
	// The engine's queries run on the pool's remaining connections.
	if _, _, err := d.SchemaVersion(ctx); err != nil {
		t.Fatalf("engine query while database/sql is saturated: %v", err)
	}
	// database/sql counts a connection as open while it is still being
	// acquired from the pool, so the pool may show fewer; never more.
	if got := d.Pool().Stat().AcquiredConns(); got > 6 {
		t.Errorf("pool has %d connections acquired, want at most 6 (by database/sql)", got)
	}
}
