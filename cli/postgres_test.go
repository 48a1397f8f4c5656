package cli

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/jobkinds"
	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/pgdriver"
)

// postgresURL returns the URL of a fresh schema on the test server
// (dropped when the test ends) and the schema's name, or skips the test.
func postgresURL(t *testing.T) (string, string) {
	t.Helper()
	return dbtest.SchemaURL(t, "kiln_cli_")
}

// TestPostgres runs the everyday commands against PostgreSQL, with two
// worker processes sharing one queue.
func TestPostgres(t *testing.T) {
	t.Parallel()
	url, schema := postgresURL(t)
	ctx := testCtx(t)
	if out := mustKiln(t, "migrate", "--db", url); !strings.Contains(out, "postgres ") || !strings.Contains(out, "schema "+schema+" migrated from schema version 0 to 1") {
		t.Errorf("migrate printed %q", out)
	}
	if out := mustKiln(t, "migrate", "--db", url); !strings.Contains(out, "is up to date (schema version 1)") {
		t.Errorf("second migrate printed %q", out)
	}
	j := decodeJob(t, mustKiln(t, "enqueue", "noop", "--db", url, "--json"))
	if j.ID <= 0 || j.State != queue.StateAvailable {
		t.Fatalf("enqueued %+v", j)
	}

	d, err := pgdriver.Open(ctx, url, pgdriver.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	w := queue.NewWorkers()
	jobkinds.Register(w)
	c, err := queue.New(queue.Config{Driver: d, Workers: w})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	ps := make([]queue.InsertParams, n)
	for i := range ps {
		ps[i] = queue.InsertParams{Kind: "noop"}
	}
	if _, err := c.InsertMany(ctx, ps); err != nil {
		t.Fatal(err)
	}

	w1 := start(t, procOpts{}, "worker", "--db", url, "--queues", "default=20")
	w2 := start(t, procOpts{}, "worker", "--db", url, "--queues", "default=20")
	waitFor(t, 60*time.Second, func() string { return fmt.Sprintf("%d jobs to complete\n%s\n%s", n+1, w1.stderr, w2.stderr) }, func() (bool, error) {
		got, err := counts(ctx, c)
		return got[queue.StateCompleted] == n+1, err
	})
	for _, job := range allJobs(ctx, t, c, queue.ListParams{}) {
		if job.Attempt != 1 {
			t.Errorf("job %d ran %d times", job.ID, job.Attempt)
		}
	}
	out := mustKiln(t, "jobs", "show", fmt.Sprint(j.ID), "--db", url, "--json")
	if got := decodeJob(t, out); got.State != queue.StateCompleted {
		t.Errorf("jobs show: %+v", got)
	}
	for _, p := range []*proc{w1, w2} {
		p.signal(syscall.SIGTERM)
	}
	for _, p := range []*proc{w1, w2} {
		if code := p.wait(15 * time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM\n%s", p.name, code, p.stderr)
		}
		if strings.Contains(p.stderr.String(), "password") {
			t.Errorf("%s logged a password", p.name)
		}
	}
}
