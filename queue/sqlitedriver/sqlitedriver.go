// Package sqlitedriver is the embedded SQLite driver of kiln's job engine.
//
// It needs no server: the database is one file in WAL mode, and any number
// of clients in one process, and processes on one machine, may share it.
// Within a process every write goes through one connection (SQLite admits
// one writer at a time; queueing in Go is faster than SQLite's busy
// handler), and reads use a pool of their own that never blocks on writes.
//
// # Durability
//
// By default (synchronous=NORMAL in WAL mode) a transaction is in the
// operating system's hands when its commit returns: a job whose insert
// returned survives the process being killed, even with SIGKILL, but the
// last transactions may be lost if the machine itself loses power. With
// Options.Strict (DSN parameter synchronous=full) every commit is fsynced
// before it returns, which survives power loss at the cost of one fsync per
// write transaction.
package sqlitedriver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnhq/kiln/queue/internal/loop"
)

// Options configure [Open].
type Options struct {
	// Strict fsyncs every commit (synchronous=FULL). See the package
	// documentation.
	Strict bool
	// BusyTimeout is how long a write waits for another process's write
	// (default 10s).
	BusyTimeout time.Duration
	// ReadConns is the size of the read pool (default 4).
	ReadConns int
	// WatchInterval is how often the change watcher looks for commits made
	// by other connections and processes (default 5ms).
	WatchInterval time.Duration
}

// Driver is the SQLite implementation of queue.Driver.
type Driver struct {
	path  string
	opts  Options
	w     *sql.DB // one connection: every write
	r     *sql.DB // read pool
	ck    *sql.DB // one connection: WAL checkpoints
	stmts stmts

	stopCheckpoints context.CancelFunc
	checkpointsDone chan struct{}
}

// connPragmas are run on every connection by the cgo library (the pure-Go
// one takes them in its DSN). Automatic checkpoints are off: a checkpoint
// would otherwise run inside whichever commit crossed the threshold,
// stalling that write (and every claim queued behind it) for milliseconds.
// The driver checkpoints in the background instead; see checkpoints.
const connPragmas = "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=67108864;"

// ParseDSN turns a kiln database URL into a file path and options. It
// accepts "sqlite:///abs/path.db", "sqlite://rel/path.db", "file:path.db"
// and a bare path, with an optional "?synchronous=full" (or "normal").
func ParseDSN(dsn string) (string, Options, error) {
	var opts Options
	s := strings.TrimSpace(dsn)
	if s == "" {
		return "", opts, errors.New("sqlite: empty database path")
	}
	query := ""
	switch {
	case strings.HasPrefix(s, "sqlite://"):
		s = strings.TrimPrefix(s, "sqlite://")
	case strings.HasPrefix(s, "sqlite:"):
		s = strings.TrimPrefix(s, "sqlite:")
	case strings.HasPrefix(s, "file:"):
		s = strings.TrimPrefix(s, "file:")
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s, query = s[:i], s[i+1:]
	}
	if s == "" {
		return "", opts, fmt.Errorf("sqlite: no file path in %q", dsn)
	}
	if strings.ContainsRune(s, 0) {
		return "", opts, fmt.Errorf("sqlite: invalid file path %q", dsn)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", opts, fmt.Errorf("sqlite: bad parameters in %q: %w", dsn, err)
	}
	for k, v := range q {
		switch k {
		case "synchronous":
			switch strings.ToLower(v[len(v)-1]) {
			case "full":
				opts.Strict = true
			case "normal":
				opts.Strict = false
			default:
				return "", opts, fmt.Errorf("sqlite: synchronous must be full or normal, got %q", v[len(v)-1])
			}
		default:
			return "", opts, fmt.Errorf("sqlite: unknown parameter %q (known: synchronous)", k)
		}
	}
	return s, opts, nil
}

// Open opens (creating if needed) the database file at path. It does not
// migrate; call [Driver.Migrate]. Errors name the path and say what is
// wrong with it: a directory that cannot be created or written, a file
// that is not a SQLite database.
func Open(path string, opts Options) (*Driver, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = 5 * time.Millisecond
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("sqlite: %s is a directory, not a database file", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("sqlite: create directory for %s: %w", path, err)
		}
	}
	w, err := sql.Open(libName, libDSN(path, opts, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open(libName, libDSN(path, opts, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(opts.ReadConns)
	r.SetMaxIdleConns(opts.ReadConns)
	ck, err := sql.Open(libName, libDSN(path, opts, false))
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	ck.SetMaxOpenConns(1)
	d := &Driver{path: path, opts: opts, w: w, r: r, ck: ck}
	ctx, cancel := context.WithTimeout(context.Background(), opts.BusyTimeout+5*time.Second)
	defer cancel()
	if err := d.check(ctx); err != nil {
		d.closeDBs()
		return nil, err
	}
	cctx, stop := context.WithCancel(context.Background())
	d.stopCheckpoints, d.checkpointsDone = stop, make(chan struct{})
	go d.checkpoints(cctx)
	return d, nil
}

// check makes sure the file is a writable SQLite database in WAL mode.
func (d *Driver) check(ctx context.Context) error {
	var mode string
	if err := d.w.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return d.explain(err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("sqlite: %s: could not switch to WAL mode (journal_mode is %s)", d.path, mode)
	}
	// A write proves the file and its directory are writable.
	if _, err := d.w.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS kiln_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"); err != nil {
		return d.explain(err)
	}
	return nil
}

// explain turns SQLite's terse open errors into ones that name the file
// and the likely cause.
func (d *Driver) explain(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "file is not a database") || strings.Contains(msg, "file is encrypted"):
		return fmt.Errorf("sqlite: %s is not a SQLite database (%v)", d.path, err)
	case strings.Contains(msg, "unable to open database file") || strings.Contains(msg, "readonly") ||
		strings.Contains(msg, "read-only") || strings.Contains(msg, "permission denied") || strings.Contains(msg, "out of memory (14)"):
		return fmt.Errorf("sqlite: cannot open %s for writing: check that the file and its directory exist and are writable (%v)", d.path, err)
	}
	return fmt.Errorf("sqlite: %s: %w", d.path, err)
}

// Name returns "sqlite".
func (d *Driver) Name() string { return "sqlite" }

// Path returns the database file's path.
func (d *Driver) Path() string { return d.path }

// DB returns the write connection pool. Domain tables that must commit
// together with jobs use it: begin a transaction on it and pass the *sql.Tx
// to queue.Client.InsertTx. It holds one connection, so while a goroutine
// holds a transaction from it, other writes wait; do not call a client's
// non-transactional methods from inside such a transaction.
func (d *Driver) DB() *sql.DB { return d.w }

// ReadDB returns the read-only pool.
func (d *Driver) ReadDB() *sql.DB { return d.r }

// Close stops background checkpoints and closes the connections; the last
// connection to close checkpoints the whole WAL into the database file.
func (d *Driver) Close() error {
	if d.stopCheckpoints != nil {
		d.stopCheckpoints()
		<-d.checkpointsDone
	}
	return d.closeDBs()
}

func (d *Driver) closeDBs() error {
	d.stmts.close()
	return errors.Join(d.w.Close(), d.r.Close(), d.ck.Close())
}

// checkpoints copies the WAL into the database file every 200ms on a
// connection of its own. A passive checkpoint never blocks writers or
// readers, so the write path never pays for it.
func (d *Driver) checkpoints(ctx context.Context) {
	defer close(d.checkpointsDone)
	loop.Every(ctx, 200*time.Millisecond, nil, func() {
		// Errors (a busy database) are retried on the next tick.
		_, _ = d.ck.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	})
}
