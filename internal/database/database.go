// Package database is kiln's application database: the users, orders,
// reports, tokens, idempotency keys and blobs that live beside the job
// engine's tables, in the same SQLite file or PostgreSQL schema, so that a
// domain write and the job it enqueues commit in one transaction.
//
// Queries are written once with ? placeholders; [DB.Rebind] turns them
// into $1, $2, … on PostgreSQL. Each dialect has its own migrations
// (migrations/sqlite, migrations/postgres) with the same version numbers.
package database

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kilnhq/kiln/internal/resilience"
	"github.com/kilnhq/kiln/queue"
)

// Dialect is the SQL dialect of a [DB].
type Dialect int

// The dialects.
const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// DB is the application database.
type DB struct {
	// W runs writes and transactions. On SQLite it is the single writer
	// connection (transactions begin IMMEDIATE); on PostgreSQL the pool.
	W *sql.DB
	// R runs reads that need no transaction; on PostgreSQL it is W.
	R       *sql.DB
	Dialect Dialect

	rebound sync.Map // query → rebound query
}

// New returns the application database over the engine driver's handles:
// for SQLite, sqlitedriver's DB and ReadDB; for PostgreSQL, pgdriver's DB
// twice.
func New(w, r *sql.DB, d Dialect) *DB {
	if r == nil {
		r = w
	}
	return &DB{W: w, R: r, Dialect: d}
}

// Rebind turns the ? placeholders of query into $1, $2, … on PostgreSQL
// and returns it unchanged on SQLite. Question marks inside single-quoted
// strings are left alone. Results are cached.
func (db *DB) Rebind(query string) string {
	if db.Dialect != Postgres {
		return query
	}
	if q, ok := db.rebound.Load(query); ok {
		return q.(string)
	}
	var b strings.Builder
	n, quoted := 0, false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	q := b.String()
	db.rebound.Store(query, q)
	return q
}

// Querier is what both *sql.DB and *sql.Tx offer.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// txRetry is how [DB.InTx] retries a transaction that failed on a
// transient error: 3 tries in all, after a few milliseconds each.
var txRetry = resilience.Retry{MaxAttempts: 3, Base: 5 * time.Millisecond, Max: 50 * time.Millisecond}

// InTx runs fn in a transaction on W and commits it when fn returns nil;
// otherwise, or when fn panics, it rolls back. The commit error, if any,
// is returned wrapped.
//
// A transaction that fails on a transient error ([IsTransient]: a
// serialization failure or deadlock on PostgreSQL, a busy or locked
// database on SQLite) is rolled back and run again from the start, up to
// 3 times in all, a few milliseconds apart, while ctx lasts. fn must
// therefore do only database work in tx (and set variables it returns):
// no calls to other services, no messages sent, nothing that a rollback
// does not undo.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	var final error // an error not worth another try, returned as is
	err := resilience.Do(ctx, txRetry, func(ctx context.Context) error {
		err := db.inTx(ctx, fn)
		if err != nil && !IsTransient(err) {
			final = err
			return resilience.Permanent(err)
		}
		return err
	})
	if final != nil {
		return final
	}
	return err
}

func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	defer func() {
		if v := recover(); v != nil {
			_ = tx.Rollback()
			panic(v)
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Time returns t as the dialect stores it: Unix microseconds (INTEGER) on
// SQLite, timestamptz on PostgreSQL. The zero time is NULL.
func (db *DB) Time(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	if db.Dialect == Postgres {
		return t.UTC()
	}
	return t.UnixMicro()
}

// StoredTime returns t as both databases store it: in UTC, to the
// microsecond. A service stamps its records with it so that what it
// returns equals what it reads back.
func StoredTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// ScanTime returns a scanner for a column written with [DB.Time]; NULL
// scans as the zero time.
func ScanTime(t *time.Time) sql.Scanner { return timeScanner{t} }

type timeScanner struct{ t *time.Time }

func (s timeScanner) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*s.t = time.Time{}
	case int64:
		*s.t = time.UnixMicro(v).UTC()
	case time.Time:
		*s.t = v.UTC()
	default:
		return fmt.Errorf("scan time: unexpected %T", v)
	}
	return nil
}

// IsTransient reports whether err is worth retrying the transaction it
// ended: a serialization failure (40001) or deadlock (40P01) on
// PostgreSQL, a busy or locked database (SQLITE_BUSY, SQLITE_LOCKED) on
// SQLite.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "40001" || pg.Code == "40P01"
	}
	// The pure-Go SQLite library's errors have a Code method; the cgo
	// one's are known by their text (the same text SQLite gives both).
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		if c := coded.Code() & 0xff; c == 5 || c == 6 { // SQLITE_BUSY, SQLITE_LOCKED
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "database is locked") || strings.Contains(msg, "database table is locked") ||
		strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "SQLITE_LOCKED")
}

// IsUniqueViolation reports whether err is a unique-constraint violation.
func IsUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// IsForeignKeyViolation reports whether err is a foreign-key violation
// (a row still referenced, or a reference to a missing row).
func IsForeignKeyViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23503"
	}
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}

//go:embed migrations
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func (db *DB) migrations() ([]migration, error) {
	dir := path.Join("migrations", db.Dialect.String())
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s: name must be NNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(migrationFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		out = append(out, migration{v, e.Name(), string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := range out {
		if out[i].version != i+1 {
			return nil, fmt.Errorf("migration %s: versions must run 1, 2, 3, … without gaps", out[i].name)
		}
	}
	return out, nil
}

const versionTable = `CREATE TABLE IF NOT EXISTS kiln_app_migrations (
	version INTEGER PRIMARY KEY,
	name TEXT NOT NULL
)`

// Migrate applies the application migrations that are pending, all in one
// transaction that first takes the database's write lock (BEGIN IMMEDIATE
// on SQLite, an advisory lock on PostgreSQL), so processes starting
// together apply each one once. A database migrated by a newer kiln is
// refused with an error wrapping queue.ErrSchemaTooNew.
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := db.migrations()
	if err != nil {
		return err
	}
	return db.InTx(ctx, func(tx *sql.Tx) error {
		if db.Dialect == Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('kiln.app.migrate.' || current_schema(), 0))`); err != nil {
				return fmt.Errorf("lock for migrations: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, versionTable); err != nil {
			return fmt.Errorf("create migrations table: %w", err)
		}
		var cur int
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM kiln_app_migrations").Scan(&cur); err != nil {
			return fmt.Errorf("read application schema version: %w", err)
		}
		if cur > len(ms) {
			return fmt.Errorf("the application schema is at version %d but this kiln knows only up to %d; upgrade kiln: %w", cur, len(ms), queue.ErrSchemaTooNew)
		}
		for _, m := range ms[cur:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO kiln_app_migrations (version, name) VALUES (?, ?)"), m.version, m.name); err != nil {
				return fmt.Errorf("record migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// ErrSchemaBehind is returned by [DB.Check] when migrations are pending.
var ErrSchemaBehind = errors.New("the application schema is not migrated; run kiln migrate (or kiln serve, which migrates)")

// Check returns nil when the application schema is exactly the one this
// build knows, an error wrapping [ErrSchemaBehind] when it is older, and
// one wrapping queue.ErrSchemaTooNew when it is newer.
func (db *DB) Check(ctx context.Context) error {
	ms, err := db.migrations()
	if err != nil {
		return err
	}
	var cur int
	if err := db.R.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM kiln_app_migrations").Scan(&cur); err != nil {
		if isMissingTable(err) {
			return fmt.Errorf("no application schema: %w", ErrSchemaBehind)
		}
		return fmt.Errorf("read application schema version: %w", err)
	}
	switch {
	case cur < len(ms):
		return fmt.Errorf("application schema version %d, want %d: %w", cur, len(ms), ErrSchemaBehind)
	case cur > len(ms):
		return fmt.Errorf("the application schema is at version %d but this kiln knows only up to %d; upgrade kiln: %w", cur, len(ms), queue.ErrSchemaTooNew)
	}
	return nil
}

func isMissingTable(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "42P01"
	}
	return strings.Contains(err.Error(), "no such table")
}
