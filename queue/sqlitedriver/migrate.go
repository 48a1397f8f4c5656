package sqlitedriver

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kilnhq/kiln/queue"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("sqlite: migration %s: name must start with NNN_", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// latestVersion is the newest schema version this build knows.
func latestVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// SchemaVersion returns the database's schema version and the newest this
// driver knows.
func (d *Driver) SchemaVersion(ctx context.Context) (int, int, error) {
	var cur int
	if err := d.r.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM kiln_migrations").Scan(&cur); err != nil {
		return 0, 0, d.explain(err)
	}
	return cur, latestVersion(), nil
}

// Migrate applies pending migrations in one immediate transaction, so two
// processes starting together cannot both apply one. It refuses a database
// migrated by a newer kiln with an error wrapping queue.ErrSchemaTooNew.
func (d *Driver) Migrate(ctx context.Context) error {
	ms, err := migrations()
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
	latest := latestVersion()
	if cur > latest {
		return fmt.Errorf("sqlite: %s has schema version %d but this kiln knows only up to %d; upgrade kiln: %w", d.path, cur, latest, queue.ErrSchemaTooNew)
	}
	for _, m := range ms {
		if m.version <= cur {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("sqlite: apply migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO kiln_migrations (version, applied_at) VALUES (?, ?)", m.version, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("sqlite: record migration %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit migrations: %w", err)
	}
	return nil
}
