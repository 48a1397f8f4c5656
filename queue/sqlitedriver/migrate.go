package sqlitedriver

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/internal/schema"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations are the driver's embedded migrations.
var migrations = schema.Embedded{FS: migrationFS, Dir: "migrations", Driver: "sqlite"}

// SchemaVersion returns the database's schema version and the newest this
// driver knows.
func (d *Driver) SchemaVersion(ctx context.Context) (int, int, error) {
	var cur int
	if err := d.r.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM kiln_migrations").Scan(&cur); err != nil {
		return 0, 0, d.explain(err)
	}
	return cur, migrations.Latest(), nil
}

// Migrate applies pending migrations in one immediate transaction, so two
// processes starting together cannot both apply one. It refuses a database
// migrated by a newer kiln with an error wrapping queue.ErrSchemaTooNew.
func (d *Driver) Migrate(ctx context.Context) error {
	ms, err := migrations.Migrations()
	if err != nil {
		return err
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return d.explain(err)
	}
	defer tx.Rollback()
	var cur int
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM kiln_migrations").Scan(&cur); err != nil {
		return d.explain(err)
	}
	latest := migrations.Latest()
	if cur > latest {
		return fmt.Errorf("sqlite: %s has schema version %d but this kiln knows only up to %d; upgrade kiln: %w", d.path, cur, latest, queue.ErrSchemaTooNew)
	}
	for _, m := range ms {
		if m.Version <= cur {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("sqlite: apply migration %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO kiln_migrations (version, applied_at) VALUES (?, ?)", m.Version, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("sqlite: record migration %s: %w", m.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit migrations: %w", err)
	}
	return nil
}
