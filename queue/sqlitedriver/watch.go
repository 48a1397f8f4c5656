package sqlitedriver

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Watch calls notify("") whenever another connection — another process, or
// a caller's transaction in this one — commits to the database. It polls
// SQLite's data_version, which costs a few microseconds and no disk I/O,
// every Options.WatchInterval.
//
// The watcher holds a read-only connection of its own for as long as it
// runs, outside the read pool: taken from the pool, it would leave every
// read waiting forever once as many clients watch as the pool holds
// connections (one, with Options.ReadConns set to 1).
func (d *Driver) Watch(ctx context.Context, notify func(queue string)) error {
	db, err := sql.Open(libName, libDSN(d.path, d.opts, true))
	if err != nil {
		return fmt.Errorf("sqlite: watch: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: watch: %w", err)
	}
	defer conn.Close()
	var last int64
	if err := conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&last); err != nil {
		return fmt.Errorf("sqlite: watch: %w", err)
	}
	t := time.NewTicker(d.opts.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var v int64
		if err := conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sqlite: watch: %w", err)
		}
		if v != last {
			last = v
			notify("")
		}
	}
}
