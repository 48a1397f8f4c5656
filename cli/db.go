package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/app"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/pgdriver"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// store is an opened database: the engine's driver, the application
// tables beside it, and where it points.
type store struct {
	driver  queue.Driver
	app     *database.DB
	display string // for messages; never contains a password
}

// workers returns a registry with every kind this command runs: the
// built-in ones, with settings k (nil: the defaults), and those of
// WithKinds.
func (g *globals) workers(b *app.Base) (*queue.Workers, error) {
	w := queue.NewWorkers()
	if err := app.RegisterKinds(w, b); err != nil {
		return nil, err
	}
	for _, register := range g.kinds {
		register(w)
	}
	return w, nil
}

// resolveDB turns --db and --data-dir into a database URL.
func (g *globals) resolveDB() string {
	if strings.TrimSpace(g.db) != "" {
		return strings.TrimSpace(g.db)
	}
	return filepath.Join(g.dataDir, "kiln.db")
}

// openStore opens the database named by url. It migrates it when migrate
// is true, and otherwise checks that its schema is current. log, when not
// nil, receives the driver's own warnings (a lost PostgreSQL LISTEN
// connection).
func openStore(ctx context.Context, url string, migrate bool, log *slog.Logger) (*store, error) {
	s, err := openRaw(ctx, url, log)
	if err != nil {
		return nil, err
	}
	if err := s.prepare(ctx, migrate); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// openRaw opens the database named by url without looking at its schema:
// PostgreSQL for postgres:// and postgresql:// URLs, SQLite otherwise.
func openRaw(ctx context.Context, url string, log *slog.Logger) (*store, error) {
	lower := strings.ToLower(url)
	switch {
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return openPostgres(ctx, url, log)
	case strings.Contains(lower, "://") && !strings.HasPrefix(lower, "sqlite://") && !strings.HasPrefix(lower, "file:"):
		scheme, _, _ := strings.Cut(url, "://")
		return nil, usagef("--db: unsupported database scheme %q (want sqlite://, postgres:// or a file path)", scheme)
	}
	path, opts, err := sqlitedriver.ParseDSN(url)
	if err != nil {
		return nil, usagef("--db: %v", err)
	}
	d, err := sqlitedriver.Open(path, opts)
	if err != nil {
		return nil, err
	}
	return &store{driver: d, app: database.New(d.DB(), d.ReadDB(), database.SQLite), display: "sqlite " + d.Path()}, nil
}

// withStore opens the database (migrating it) and runs fn with it.
// logger, when not nil, makes the logger the store logs to; fn gets it
// too (nil without it).
//
// With mustExist, an embedded database file that does not exist is an
// error rather than a new empty database: a mistyped --db or --data-dir
// given to a command that only reads or changes existing data should say
// so, not print an empty list.
func withStore(ctx context.Context, g *globals, mustExist bool, logger func() (*slog.Logger, error), fn func(s *store, log *slog.Logger) error) error {
	url := g.resolveDB()
	if mustExist {
		if err := sqliteMustExist(url); err != nil {
			return err
		}
	}
	var log *slog.Logger
	if logger != nil {
		var err error
		if log, err = logger(); err != nil {
			return err
		}
	}
	s, err := openStore(ctx, url, true, log)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s, log)
}

// sqliteMustExist reports an error when url names an embedded database
// file that does not exist. Other URLs pass.
func sqliteMustExist(url string) error {
	lower := strings.ToLower(url)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		return nil
	}
	path, _, err := sqlitedriver.ParseDSN(url)
	if err != nil {
		return usagef("--db: %v", err)
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no kiln database at %s: check --db or --data-dir (serve, worker, enqueue and migrate create one)", path)
	}
	return nil
}

// openPostgres opens a PostgreSQL database. A malformed URL is a usage
// error; an unreachable server or refused credentials are not. Neither
// message shows the password.
func openPostgres(ctx context.Context, url string, log *slog.Logger) (*store, error) {
	cfg, err := pgdriver.ParseURL(url, pgdriver.Options{Logger: log})
	if err != nil {
		return nil, usagef("--db %s: %v", redact(url), err)
	}
	d, err := pgdriver.OpenConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &store{driver: d, app: database.New(d.DB(), d.DB(), database.Postgres), display: "postgres " + d.Display()}, nil
}

func (s *store) prepare(ctx context.Context, migrate bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if migrate {
		if err := s.driver.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate %s: %w", s.display, err)
		}
		if err := s.app.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate %s: %w", s.display, err)
		}
		return nil
	}
	cur, latest, err := s.driver.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version of %s: %w", s.display, err)
	}
	switch {
	case cur > latest:
		return fmt.Errorf("%s has schema version %d, newer than this kiln's %d: %w", s.display, cur, latest, queue.ErrSchemaTooNew)
	case cur < latest:
		return fmt.Errorf("%s has schema version %d, this kiln needs %d: run 'kiln migrate' first", s.display, cur, latest)
	}
	if err := s.app.Check(ctx); err != nil {
		if errors.Is(err, database.ErrSchemaBehind) {
			return fmt.Errorf("%s: %w", s.display, err)
		}
		return fmt.Errorf("check %s: %w", s.display, err)
	}
	return nil
}

func (s *store) Close() error { return s.driver.Close() }

// redact hides the password of a database URL.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return url
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return url
	}
	return scheme + "://" + user + ":xxxxx@" + rest[at+1:]
}
