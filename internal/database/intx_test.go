package database_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
)

// sqliteError stands for the pure-Go SQLite library's errors, which have
// a Code method.
type sqliteError int

func (e sqliteError) Error() string { return fmt.Sprintf("sqlite error %d", int(e)) }
func (e sqliteError) Code() int     { return int(e) }

func TestIsTransient(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]bool{
		nil:                            false,
		errors.New("boom"):             false,
		&pgconn.PgError{Code: "40001"}: true,
		&pgconn.PgError{Code: "40P01"}: true,
		&pgconn.PgError{Code: "23505"}: false,
		fmt.Errorf("insert: %w", &pgconn.PgError{Code: "40P01"}): true,
		errors.New("database is locked"):                         true, // the cgo library's SQLITE_BUSY
		errors.New("database table is locked: jobs"):             true, // and SQLITE_LOCKED
		errors.New("database is locked (5) (SQLITE_BUSY)"):       true,
		sqliteError(5):        true,
		sqliteError(6):        true,
		sqliteError(5 | 2<<8): true, // SQLITE_BUSY_SNAPSHOT
		sqliteError(19):       false,
		errors.New("UNIQUE constraint failed: users.email"): false,
	} {
		if got := database.IsTransient(err); got != want {
			t.Errorf("IsTransient(%v) = %v, want %v", err, got, want)
		}
	}
}

// TestInTxRetriesTransientErrors runs a transaction that fails on a
// transient error once: it is rolled back and run again. A transaction
// failing on any other error runs once.
func TestInTxRetriesTransientErrors(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db := e.DB
		if _, err := db.W.ExecContext(ctx, "CREATE TABLE intx_test (n INTEGER NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		insert := func(tx *sql.Tx, n int) error {
			_, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO intx_test (n) VALUES (?)"), n)
			return err
		}
		// failOnce makes the first run fail the way the database does
		// when it gives up on a transaction: on PostgreSQL a real
		// serialization_failure from the server.
		failOnce := func(tx *sql.Tx) error {
			if db.Dialect == database.Postgres {
				_, err := tx.ExecContext(ctx, `DO $$ BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure'; END $$`)
				return err
			}
			return fmt.Errorf("insert: %w", errors.New("database is locked"))
		}
		runs := 0
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			runs++
			if err := insert(tx, runs); err != nil {
				return err
			}
			if runs == 1 {
				return failOnce(tx)
			}
			return nil
		})
		if err != nil || runs != 2 {
			t.Fatalf("InTx: %v after %d runs, want success on the second", err, runs)
		}
		var ns []int
		rows, err := db.R.QueryContext(ctx, "SELECT n FROM intx_test ORDER BY n")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n int
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			ns = append(ns, n)
		}
		rows.Close()
		if fmt.Sprint(ns) != "[2]" {
			t.Errorf("rows %v: want only the second run's", ns)
		}

		// A transient error every time: 3 runs, then the error.
		runs = 0
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			runs++
			return failOnce(tx)
		})
		if !database.IsTransient(err) || runs != 3 {
			t.Errorf("always transient: %v after %d runs, want 3", err, runs)
		}

		// Any other error: one run, the error as returned.
		boom := errors.New("boom")
		runs = 0
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			runs++
			return boom
		})
		if err != boom || runs != 1 {
			t.Errorf("non-transient: %v after %d runs, want boom after 1", err, runs)
		}
		// A unique violation is not transient either.
		runs = 0
		if _, err := db.W.ExecContext(ctx, "CREATE UNIQUE INDEX intx_test_n ON intx_test (n)"); err != nil {
			t.Fatal(err)
		}
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			runs++
			return insert(tx, 2)
		})
		if !database.IsUniqueViolation(err) || runs != 1 {
			t.Errorf("unique violation: %v after %d runs", err, runs)
		}

		// A context done between runs stops the retries.
		cctx, ccancel := context.WithCancel(ctx)
		runs = 0
		err = db.InTx(cctx, func(tx *sql.Tx) error {
			runs++
			ccancel()
			return failOnce(tx)
		})
		if !errors.Is(err, context.Canceled) || runs != 1 {
			t.Errorf("cancelled: %v after %d runs", err, runs)
		}
	})
}
