package orders

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// assertNothingStored checks that no order and no order.confirm job
// exist.
func (e *env) assertNothingStored() {
	e.t.Helper()
	if n := e.count("SELECT count(*) FROM orders"); n != 0 {
		e.t.Errorf("%d orders stored, want none", n)
	}
	if jobs := e.confirmJobs(); len(jobs) != 0 {
		e.t.Errorf("%d %s jobs stored, want none: first %+v", len(jobs), KindConfirm, jobs[0])
	}
	if n := e.count("SELECT count(*) FROM kiln_jobs"); n != 0 {
		e.t.Errorf("%d jobs stored, want none", n)
	}
}

// assertCreateWorks checks that the database is usable after a failure:
// a new order and its job are both stored.
func (e *env) assertCreateWorks(userID int64) {
	e.t.Helper()
	o := e.create(`{"user_id":` + itoa(userID) + `,"amount_cents":1,"currency":"EUR"}`)
	if n := e.count("SELECT count(*) FROM orders"); n != 1 {
		e.t.Errorf("%d orders after a good create, want 1", n)
	}
	jobs := e.confirmJobs()
	if len(jobs) != 1 || jobs[0].ID != o.ConfirmJobID {
		e.t.Errorf("jobs after a good create: %v, want job %d", jobs, o.ConfirmJobID)
	}
}

// TestFailedCommitLeavesNothing makes the COMMIT of the create
// transaction itself fail, after both the order and its job were
// inserted, and checks that neither exists afterwards and that the client
// got a 5xx problem.
func TestFailedCommitLeavesNothing(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		userID := e.user("ada@example.com")
		var why string
		switch e.db.Dialect {
		case database.SQLite:
			// A deferred foreign key is checked only at COMMIT; the
			// trigger breaks it for every new order.
			e.exec(
				`CREATE TABLE commit_guard_parent (id INTEGER PRIMARY KEY)`,
				`CREATE TABLE commit_guard (parent_id INTEGER REFERENCES commit_guard_parent (id) DEFERRABLE INITIALLY DEFERRED)`,
				`CREATE TRIGGER orders_fail_commit AFTER INSERT ON orders BEGIN INSERT INTO commit_guard (parent_id) VALUES (NEW.id); END`,
			)
			why = "FOREIGN KEY constraint failed"
		case database.Postgres:
			// A deferred constraint trigger runs only at COMMIT.
			e.exec(
				`CREATE FUNCTION orders_fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'commit refused by the test'; END $$`,
				`CREATE CONSTRAINT TRIGGER orders_fail_commit AFTER INSERT ON orders DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION orders_fail_commit()`,
			)
			why = "commit refused by the test"
		}

		r := e.Do("POST", "/api/v1/orders", `{"user_id":`+itoa(userID)+`,"amount_cents":1999,"currency":"EUR","note":"x"}`)
		p := testutil.ProblemOf(t, r, http.StatusInternalServerError)
		if p.Code != "internal" || r.Header.Get("Location") != "" {
			t.Errorf("failed commit answered %+v (Location %q)", p, r.Header.Get("Location"))
		}
		if strings.Contains(p.Detail, why) {
			t.Errorf("the problem shows the internal cause: %q", p.Detail)
		}
		// The failure was the commit's, after both inserts succeeded.
		logs := e.logs.String()
		if !strings.Contains(logs, "commit: ") || !strings.Contains(logs, why) || !strings.Contains(logs, p.RequestID) {
			t.Errorf("the log does not show the failed commit of request %s:\n%s", p.RequestID, logs)
		}
		e.assertNothingStored()
		if e.db.Dialect == database.SQLite {
			if n := e.count("SELECT count(*) FROM commit_guard"); n != 0 {
				t.Errorf("%d guard rows stored", n)
			}
		}

		// Without the guard, the same database takes orders again.
		e.dropTrigger("orders_fail_commit", "orders")
		e.assertCreateWorks(userID)
	})
}

// TestFailedJobInsertRollsBackOrder makes the job's INSERT fail inside
// the transaction, after the order row was inserted.
func TestFailedJobInsertRollsBackOrder(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		userID := e.user("ada@example.com")
		switch e.db.Dialect {
		case database.SQLite:
			e.exec(`CREATE TRIGGER jobs_refuse BEFORE INSERT ON kiln_jobs BEGIN SELECT RAISE(ABORT, 'jobs refused by the test'); END`)
		case database.Postgres:
			e.exec(
				`CREATE FUNCTION jobs_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'jobs refused by the test'; END $$`,
				`CREATE TRIGGER jobs_refuse BEFORE INSERT ON kiln_jobs FOR EACH ROW EXECUTE FUNCTION jobs_refuse()`,
			)
		}
		r := e.Do("POST", "/api/v1/orders", `{"user_id":`+itoa(userID)+`,"amount_cents":1999,"currency":"EUR"}`)
		testutil.ProblemOf(t, r, http.StatusInternalServerError)
		if logs := e.logs.String(); !strings.Contains(logs, "jobs refused by the test") || !strings.Contains(logs, "enqueue order.confirm job") {
			t.Errorf("the log does not show the failed job insert:\n%s", logs)
		}
		e.assertNothingStored()

		e.dropTrigger("jobs_refuse", "kiln_jobs")
		e.assertCreateWorks(userID)
	})
}

// TestUnregisteredKind: a server whose engine does not know
// order.confirm refuses the create with a 422 naming the kind, as every
// route does (an unknown kind is the engine refusing the job), and
// stores nothing.
func TestUnregisteredKind(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{noKinds: true})
		userID := e.user("ada@example.com")
		r := e.Do("POST", "/api/v1/orders", `{"user_id":`+itoa(userID)+`,"amount_cents":1,"currency":"EUR"}`)
		if p := testutil.ProblemOf(t, r, http.StatusUnprocessableEntity); !strings.Contains(p.Detail, `unknown job kind "order.confirm"`) {
			t.Errorf("the problem does not name the unknown kind: %+v", p)
		}
		e.assertNothingStored()
	})
}

// TestCreateEnqueuesInTheSameTransaction checks the job as stored: its
// kind and args name the order.
func TestCreateEnqueuesInTheSameTransaction(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		userID := e.user("ada@example.com")
		o := e.create(`{"user_id":` + itoa(userID) + `,"amount_cents":5,"currency":"USD"}`)
		j, err := e.client.Get(context.Background(), o.ConfirmJobID)
		if err != nil {
			t.Fatal(err)
		}
		var args map[string]any
		if err := json.Unmarshal(j.Args, &args); err != nil {
			t.Fatal(err)
		}
		if j.Kind != KindConfirm || len(args) != 1 || args["order_id"] != float64(o.ID) || j.State != queue.StateAvailable {
			t.Errorf("job %+v args %v for order %d", j, args, o.ID)
		}
	})
}

// TestConfirmEndToEnd creates an order over HTTP with a working client
// and waits until its job has confirmed it.
func TestConfirmEndToEnd(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{work: true})
		userID := e.user("ada@example.com")
		o := e.create(`{"user_id":` + itoa(userID) + `,"amount_cents":4200,"currency":"GBP","note":"rush"}`)
		if o.Status != "pending" || o.ConfirmedAt != "" {
			t.Errorf("created %+v", o)
		}
		var got order
		testutil.Eventually(t, "the order is confirmed", func() bool {
			got = e.get(o.ID)
			return got.Status == "confirmed"
		})
		if !timeFormat.MatchString(got.ConfirmedAt) || got.UpdatedAt != got.ConfirmedAt {
			t.Errorf("confirmed %+v", got)
		}
		testutil.Eventually(t, "the job is completed", func() bool {
			j, err := e.client.Get(context.Background(), o.ConfirmJobID)
			if err != nil {
				t.Fatal(err)
			}
			return j.State == queue.StateCompleted
		})
		if j, _ := e.client.Get(context.Background(), o.ConfirmJobID); j.Attempt != 1 {
			t.Errorf("job took %d attempts", j.Attempt)
		}
	})
}
