package database_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/queue"
)

func TestRebind(t *testing.T) {
	t.Parallel()
	pg := database.New(nil, nil, database.Postgres)
	for in, want := range map[string]string{
		"SELECT 1":                               "SELECT 1",
		"SELECT * FROM t WHERE a = ? AND b = ?":  "SELECT * FROM t WHERE a = $1 AND b = $2",
		"SELECT '?' , ? FROM t":                  "SELECT '?' , $1 FROM t",
		"INSERT INTO t VALUES (?, 'it''s ?', ?)": "INSERT INTO t VALUES ($1, 'it''s ?', $2)",
	} {
		if got := pg.Rebind(in); got != want {
			t.Errorf("Rebind(%q) = %q, want %q", in, got, want)
		}
		if got := pg.Rebind(in); got != want { // cached
			t.Errorf("cached Rebind(%q) = %q", in, got)
		}
	}
	lite := database.New(nil, nil, database.SQLite)
	if got := lite.Rebind("a = ?"); got != "a = ?" {
		t.Errorf("SQLite Rebind changed the query: %q", got)
	}
}

func TestDatabase(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := context.Background()
		db := e.DB
		// Migrating again is a no-op and the schema checks out.
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.Check(ctx); err != nil {
			t.Fatal(err)
		}
		// Times round-trip at microsecond precision, in UTC.
		now := time.Date(2026, 11, 26, 12, 30, 45, 123456789, time.FixedZone("x", 3600))
		var id int64
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, db.Rebind("INSERT INTO users (email, name, created_at, updated_at) VALUES (?, ?, ?, ?) RETURNING id"),
				"a@example.com", "A", db.Time(now), db.Time(now)).Scan(&id)
		})
		if err != nil {
			t.Fatal(err)
		}
		var got time.Time
		if err := db.R.QueryRowContext(ctx, db.Rebind("SELECT created_at FROM users WHERE id = ?"), id).Scan(database.ScanTime(&got)); err != nil {
			t.Fatal(err)
		}
		if !got.Equal(now.Truncate(time.Microsecond)) || got.Location() != time.UTC {
			t.Errorf("time round trip: %v, want %v in UTC", got, now)
		}
		// A failing function rolls back.
		boom := errors.New("boom")
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO users (email, name, created_at, updated_at) VALUES (?, ?, ?, ?)"), "b@example.com", "B", db.Time(now), db.Time(now)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx error %v", err)
		}
		var n int
		if err := db.R.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 1 {
			t.Errorf("after rollback: %d users, %v", n, err)
		}
		// Constraint errors are classified.
		_, err = db.W.ExecContext(ctx, db.Rebind("INSERT INTO users (email, name, created_at, updated_at) VALUES (?, ?, ?, ?)"), "a@example.com", "dup", db.Time(now), db.Time(now))
		if !database.IsUniqueViolation(err) || database.IsForeignKeyViolation(err) {
			t.Errorf("duplicate email: %v", err)
		}
		_, err = db.W.ExecContext(ctx, db.Rebind("INSERT INTO orders (user_id, status, amount_cents, currency, created_at, updated_at) VALUES (?, 'pending', 1, 'EUR', ?, ?)"), 999999, db.Time(now), db.Time(now))
		if !database.IsForeignKeyViolation(err) || database.IsUniqueViolation(err) {
			t.Errorf("order of a missing user: %v", err)
		}
		// A schema newer than this build is refused; an older one is
		// reported as behind.
		if _, err := db.W.ExecContext(ctx, "INSERT INTO kiln_app_migrations (version, name) VALUES (999, 'future')"); err != nil {
			t.Fatal(err)
		}
		if err := db.Check(ctx); !errors.Is(err, queue.ErrSchemaTooNew) {
			t.Errorf("Check on a newer schema: %v", err)
		}
		if err := db.Migrate(ctx); !errors.Is(err, queue.ErrSchemaTooNew) {
			t.Errorf("Migrate on a newer schema: %v", err)
		}
		if _, err := db.W.ExecContext(ctx, "DELETE FROM kiln_app_migrations WHERE version >= 2"); err != nil {
			t.Fatal(err)
		}
		if err := db.Check(ctx); !errors.Is(err, database.ErrSchemaBehind) {
			t.Errorf("Check on an older schema: %v", err)
		}
	})
}

func TestCheckWithoutSchema(t *testing.T) {
	t.Parallel()
	e := dbtest.SQLite(t)
	if _, err := e.DB.W.Exec("DROP TABLE kiln_app_migrations"); err != nil {
		t.Fatal(err)
	}
	if err := e.DB.Check(context.Background()); !errors.Is(err, database.ErrSchemaBehind) {
		t.Errorf("Check without the table: %v", err)
	}
}
