package pgdriver

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/internal/schema"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations are the driver's embedded migrations.
var migrations = schema.Embedded{FS: migrationFS, Dir: "migrations", Driver: "postgres"}

// SchemaVersion returns the database's schema version (0 when kiln's
// tables do not exist yet) and the newest this driver knows.
func (d *Driver) SchemaVersion(ctx context.Context) (int, int, error) {
	var cur int
	err := d.pool.QueryRow(ctx, `SELECT CASE WHEN to_regclass('kiln_migrations') IS NULL THEN 0
	 ELSE (SELECT coalesce(max(version), 0) FROM kiln_migrations) END`).Scan(&cur)
	if err != nil {
		var pgErr *pgconn.PgError
		// The CASE is planned before it runs; a concurrent first
		// migration can make the table appear in between.
		if errors.As(err, &pgErr) && pgErr.Code == codeUndefinedTable {
			return 0, migrations.Latest(), nil
		}
		return 0, 0, d.explain("read schema version", err)
	}
	return cur, migrations.Latest(), nil
}

// migrateLockKey is the advisory lock held while migrating; the schema is
// part of it so that installations in different schemas migrate
// independently.
const migrateLockSQL = `SELECT pg_advisory_xact_lock(hashtextextended('kiln.migrate.' || $1, 0))`

// Migrate creates the schema named by Options.Schema if it is missing and
// applies pending migrations in one transaction, under a transaction-scoped
// advisory lock, so processes starting together apply each migration
// once. It refuses a database migrated by a newer kiln with an error
// wrapping queue.ErrSchemaTooNew, and explains missing privileges.
func (d *Driver) Migrate(ctx context.Context) error {
	ms, err := migrations.Migrations()
	if err != nil {
		return err
	}
	latest := migrations.Latest()
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return d.explain("migrate", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, migrateLockSQL, d.opts.Schema); err != nil {
		return d.explain("migrate: take the migration lock", err)
	}
	if s := d.opts.Schema; s != "" {
		// CREATE SCHEMA IF NOT EXISTS demands CREATE on the database even
		// when the schema exists; look first.
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, s).Scan(&exists); err != nil {
			return d.explain("migrate", err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{s}.Sanitize()); err != nil {
				return d.explain(fmt.Sprintf("migrate: create schema %s", s), err)
			}
		}
	}
	// The schema tables are created in: the first usable one on the
	// search_path. A schema the role may not use is skipped.
	var target *string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&target); err != nil {
		return d.explain("migrate", err)
	}
	if target == nil {
		return fmt.Errorf("postgres %s/%s: migrate: no schema on the search_path is usable by user %q: permission denied (%s)",
			d.addr, d.dbname, d.user, d.privilegeHint())
	}
	var cur int
	if err := tx.QueryRow(ctx, `SELECT CASE WHEN to_regclass('kiln_migrations') IS NULL THEN -1 ELSE 0 END`).Scan(&cur); err != nil {
		return d.explain("migrate: read schema version", err)
	}
	if cur == 0 {
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM kiln_migrations").Scan(&cur); err != nil {
			return d.explain("migrate: read schema version", err)
		}
	}
	if cur > latest {
		return fmt.Errorf("postgres %s: schema version %d but this kiln knows only up to %d; upgrade kiln: %w", d.Display(), cur, latest, queue.ErrSchemaTooNew)
	}
	if cur == latest {
		return nil // current: a role without CREATE may run this
	}
	var canCreate bool
	if err := tx.QueryRow(ctx, `SELECT has_schema_privilege(current_schema(), 'CREATE')`).Scan(&canCreate); err != nil {
		return d.explain("migrate", err)
	}
	if !canCreate {
		return fmt.Errorf("postgres %s/%s: migrate: permission denied: user %q may not create tables in schema %s (%s)",
			d.addr, d.dbname, d.user, *target, d.privilegeHint())
	}
	if cur < 0 {
		cur = 0
		if _, err := tx.Exec(ctx, `CREATE TABLE kiln_migrations (
		  version    integer     PRIMARY KEY,
		  applied_at timestamptz NOT NULL)`); err != nil {
			return d.explain("migrate: create kiln_migrations", err)
		}
	}
	for _, m := range ms {
		if m.Version <= cur {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return d.explain("apply migration "+m.Name, err)
		}
		// Migrations are not governed by the engine's clock.
		if _, err := tx.Exec(ctx, "INSERT INTO kiln_migrations (version, applied_at) VALUES ($1, $2)", m.Version, time.Now()); err != nil {
			return d.explain("record migration "+m.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return d.explain("commit migrations", err)
	}
	return nil
}
