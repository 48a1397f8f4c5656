// Package dbtest gives tests a fresh, migrated application database and a
// job engine client on it: a new SQLite file, or a new PostgreSQL schema
// when KILN_TEST_DATABASE_URL is set.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/pgdriver"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// Env is a migrated database with an engine client on it. The client is
// not started: a test registers its kinds on Workers and calls Start, or
// uses the client only to insert and read jobs.
type Env struct {
	DB     *database.DB
	Driver queue.Driver
	// URL opens the same database (a file path, or a postgres:// URL
	// with kiln_schema).
	URL string
}

// Each runs fn once on SQLite and once on PostgreSQL (skipped with a
// message when KILN_TEST_DATABASE_URL is unset), each as a parallel
// subtest named "sqlite" or "postgres".
func Each(t *testing.T, fn func(t *testing.T, e *Env)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, SQLite(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, Postgres(t))
	})
}

// SQLite returns an environment on a new SQLite file in t.TempDir().
func SQLite(t testing.TB) *Env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kiln.db")
	d, err := sqlitedriver.Open(path, sqlitedriver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return migrate(t, &Env{DB: database.New(d.DB(), d.ReadDB(), database.SQLite), Driver: d, URL: path})
}

// Postgres returns an environment in a new schema of the server at
// KILN_TEST_DATABASE_URL, dropped when the test ends; without the
// variable the test is skipped.
func Postgres(t testing.TB) *Env {
	t.Helper()
	url, _ := SchemaURL(t, "kiln_test_")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := pgdriver.Open(ctx, url, pgdriver.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return migrate(t, &Env{DB: database.New(d.DB(), d.DB(), database.Postgres), Driver: d, URL: url})
}

// SchemaURL returns the URL of a new schema, named prefix and random
// hex, of the server at KILN_TEST_DATABASE_URL, and the schema's name.
// The schema is dropped when the test ends; without the variable the test
// is skipped.
func SchemaURL(t testing.TB, prefix string) (url, schema string) {
	t.Helper()
	base := os.Getenv("KILN_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("KILN_TEST_DATABASE_URL is not set; set it to a PostgreSQL URL to run the PostgreSQL tests")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema = prefix + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "kiln_schema=" + schema, schema
}

func migrate(t testing.TB, e *Env) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.DB.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// Client returns an engine client on e with cfg (its Driver is set here),
// stopped when the test ends. Register kinds on cfg.Workers first; the
// client is started when start is true.
func (e *Env) Client(t testing.TB, cfg queue.Config, start bool) *queue.Client {
	t.Helper()
	cfg.Driver = e.Driver
	c, err := queue.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if start {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = c.Stop(ctx)
		})
	}
	return c
}

// Count returns the one integer query selects on e (a count(*)).
func (e *Env) Count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.DB.W.QueryRowContext(context.Background(), e.DB.Rebind(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Exec runs query with args on e.
func (e *Env) Exec(t testing.TB, query string, args ...any) {
	t.Helper()
	if _, err := e.DB.W.ExecContext(context.Background(), e.DB.Rebind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// WaitJob polls job id on c until cond holds of it, or, when cond is
// nil, until it is final; after 30 seconds it fails t.
func WaitJob(t testing.TB, c *queue.Client, id int64, cond func(*queue.Job) bool) *queue.Job {
	t.Helper()
	if cond == nil {
		cond = func(j *queue.Job) bool { return j.State.Final() }
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := c.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d still %s after 30s, attempt %d, errors %+v", id, j.State, j.Attempt, j.Errors)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
