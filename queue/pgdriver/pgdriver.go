// Package pgdriver is the PostgreSQL driver of kiln's job engine.
//
// Any number of kiln processes, on any number of machines, may share one
// PostgreSQL database (or one schema of it). Workers claim jobs with
// SELECT … FOR UPDATE SKIP LOCKED, so concurrent claims never block each
// other and never take the same job; unique keys are serialised by a
// transaction-scoped advisory lock; migrations run under an advisory lock,
// so processes starting together are safe; and leadership (the rescuer,
// promoter and pruner) is a row in kiln_leaders with an expiry. The driver
// never reads the database's clock: the engine passes every time it stores
// or compares, so the hosts' clocks should be kept in sync (NTP), as for
// any lease-based system.
//
// # Durability
//
// A job exists once the transaction inserting it commits, with PostgreSQL's
// commit semantics: with the server default synchronous_commit=on, a commit
// returns only after its WAL record is flushed to disk (and, with
// synchronous replication, to the standbys), so an inserted job, a claim
// or an outcome survives a crash of the server or the machine. With
// synchronous_commit=off a server crash may lose the last few hundred
// milliseconds of commits, never corrupting the database; kiln's
// at-least-once delivery then reruns at most the jobs whose outcome was
// lost. The driver never changes the setting.
//
// # Wake-ups: LISTEN/NOTIFY or polling
//
// Inserts, promotions, retries and hand-backs that make jobs available send
// pg_notify('kiln_jobs', queue) in the same transaction (the channel is
// kiln_jobs.<schema> with Options.Schema, so installations in different
// schemas do not wake each other), so the notification is delivered
// exactly when the jobs become visible. Each
// client's [Driver.Watch] holds one connection of its own (outside the
// pool) in LISTEN and wakes the producer of the named queue, which claims
// within a millisecond or two. If that connection is lost, Watch logs once
// and reconnects with backoff; meanwhile, and always, the engine's poll
// (Config.PollInterval) finds jobs that no notification announced.
//
// Behind PgBouncer in transaction pooling mode LISTEN does not work: set
// Options.PollOnly, or add kiln_poll_only=true to the URL, and the driver
// neither listens nor relies on it; pickup latency is then bounded by the
// poll interval. Also connect with default_query_exec_mode=exec (or use
// PgBouncer 1.21+ with max_prepared_statements) and do not use
// Options.Schema there (PgBouncer refuses a search_path startup
// parameter unless told to ignore or track it); give the role a default
// search_path instead (ALTER ROLE … SET search_path).
//
// # URLs
//
// [Open] takes a postgres:// or postgresql:// URL, or a key=value
// connection string, as understood by pgx (sslmode, connect_timeout,
// pool_max_conns, …), plus these parameters of kiln's own, removed before
// the URL reaches pgx:
//
//	kiln_poll_only=true   Options.PollOnly
//	kiln_schema=NAME      Options.Schema
//
// # Transactions
//
// [Driver.InsertMany] (and so queue.Client.InsertTx) accepts a pgx.Tx
// from [Driver.Pool], or a *sql.Tx from [Driver.DB], so that jobs commit
// together with the caller's own writes.
package pgdriver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// Defaults of [Options].
const (
	// DefaultMaxConns is the pool size when neither Options.MaxConns nor
	// the URL's pool_max_conns sets one. The engine batches its claims,
	// outcomes and heartbeats, so one client needs only a few connections;
	// the rest serve inserts and reads from the application.
	DefaultMaxConns = 16
	// DefaultConnectTimeout bounds each connection attempt.
	DefaultConnectTimeout = 10 * time.Second
)

// Options configure [Open]. URL parameters (see the package
// documentation) override them.
type Options struct {
	// Schema, when set, is the only schema on every connection's
	// search_path: the driver's tables live there, and [Driver.Migrate]
	// creates it if it is missing. Empty keeps the server's search_path
	// (normally "$user", public).
	Schema string
	// PollOnly disables LISTEN/NOTIFY wake-ups ([Driver.Watch] returns at
	// once); workers find jobs by polling. Use it behind PgBouncer in
	// transaction mode.
	PollOnly bool
	// MaxConns is the pool size (default DefaultMaxConns, or the URL's
	// pool_max_conns).
	MaxConns int32
	// ConnectTimeout bounds each connection attempt (default
	// DefaultConnectTimeout, or the URL's connect_timeout).
	ConnectTimeout time.Duration
	// Logger receives the change watcher's connection warnings (default:
	// discarded).
	Logger *slog.Logger
}

// Driver is the PostgreSQL implementation of queue.Driver. It is safe for
// concurrent use.
type Driver struct {
	pool    *pgxpool.Pool
	opts    Options
	addr    string // host:port
	dbname  string
	user    string
	channel string // NOTIFY channel
	log     *slog.Logger

	dbOnce sync.Once
	db     *sql.DB
}

// Config is a parsed database URL: the pool configuration for pgx and
// the driver's options.
type Config struct {
	Pool *pgxpool.Config
	Opts Options
}

// ParseURL parses a database URL (or key=value connection string) and the
// kiln_* parameters in it, applying opts' settings where the URL sets
// none. Errors never include the password.
func ParseURL(rawURL string, opts Options) (*Config, error) {
	s := strings.TrimSpace(rawURL)
	if s == "" {
		return nil, errors.New("postgres: empty database URL")
	}
	lower := strings.ToLower(s)
	if scheme, _, ok := strings.Cut(lower, "://"); ok && scheme != "postgres" && scheme != "postgresql" {
		return nil, fmt.Errorf("postgres: unsupported URL scheme %q (want postgres:// or postgresql://)", scheme)
	}
	pc, err := pgxpool.ParseConfig(s)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid database URL: %v", redactErr(err, s))
	}
	// pgx passes parameters it does not know to the server; kiln's own are
	// taken out first.
	params := pc.ConnConfig.RuntimeParams
	for k, v := range params {
		if !strings.HasPrefix(k, "kiln_") {
			continue
		}
		switch k {
		case "kiln_poll_only":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("postgres: kiln_poll_only must be true or false, got %q", v)
			}
			opts.PollOnly = b
		case "kiln_schema":
			opts.Schema = v
		default:
			return nil, fmt.Errorf("postgres: unknown parameter %q (known: kiln_poll_only, kiln_schema)", k)
		}
		delete(params, k)
	}
	maxConnsInURL := strings.Contains(lower, "pool_max_conns")
	if opts.Schema != "" && (len(opts.Schema) > 63 || strings.ContainsRune(opts.Schema, 0)) {
		return nil, fmt.Errorf("postgres: schema name %q must be 1-63 bytes without NUL", opts.Schema)
	}
	if !maxConnsInURL {
		pc.MaxConns = DefaultMaxConns
		if opts.MaxConns > 0 {
			pc.MaxConns = opts.MaxConns
		}
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = DefaultConnectTimeout
		if opts.ConnectTimeout > 0 {
			pc.ConnConfig.ConnectTimeout = opts.ConnectTimeout
		}
	}
	if opts.Schema != "" {
		pc.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{opts.Schema}.Sanitize()
	}
	// Application name shows in pg_stat_activity.
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "kiln"
	}
	return &Config{Pool: pc, Opts: opts}, nil
}

// Open connects to the database named by rawURL and checks that the
// server is reachable and accepts the credentials, within the connect
// timeout. It does not migrate; call [Driver.Migrate]. Errors say whether
// the URL is malformed, the server unreachable (naming host:port), or the
// credentials or database refused; they never include the password.
func Open(ctx context.Context, rawURL string, opts Options) (*Driver, error) {
	cfg, err := ParseURL(rawURL, opts)
	if err != nil {
		return nil, err
	}
	return OpenConfig(ctx, cfg)
}

// OpenConfig is [Open] with a parsed configuration.
func OpenConfig(ctx context.Context, cfg *Config) (*Driver, error) {
	pc, opts := cfg.Pool, cfg.Opts
	d := &Driver{
		opts:    opts,
		addr:    hostPort(pc.ConnConfig.Host, pc.ConnConfig.Port),
		dbname:  pc.ConnConfig.Database,
		user:    pc.ConnConfig.User,
		channel: channelName(opts.Schema),
		log:     opts.Logger,
	}
	if d.log == nil {
		d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, d.explain("connect", err)
	}
	d.pool = pool
	pctx, cancel := context.WithTimeout(ctx, pc.ConnConfig.ConnectTimeout+time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, d.explain("connect", err)
	}
	return d, nil
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return host // a Unix socket directory
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// channelName is the NOTIFY channel: kiln_jobs, or one per schema so that
// kiln installations in different schemas of one database do not wake
// each other. Channel names are limited to 63 bytes.
func channelName(schema string) string {
	if schema == "" {
		return "kiln_jobs"
	}
	c := "kiln_jobs." + schema
	if len(c) > 63 {
		c = c[:63]
	}
	return c
}

// Name returns "postgres".
func (d *Driver) Name() string { return "postgres" }

// Display returns where the driver points, for messages: host:port/database,
// and the schema if one is set. It never contains a password.
func (d *Driver) Display() string {
	s := d.addr + "/" + d.dbname
	if d.opts.Schema != "" {
		s += " schema " + d.opts.Schema
	}
	return s
}

// Pool returns the driver's connection pool. Begin a transaction on it
// and pass the pgx.Tx to queue.Client.InsertTx to insert jobs together
// with your own writes.
func (d *Driver) Pool() *pgxpool.Pool { return d.pool }

// DB returns a database/sql handle on the driver's pool (pgx's stdlib
// adapter), created on first use and closed by [Driver.Close]. A *sql.Tx
// begun on it may be passed to queue.Client.InsertTx.
func (d *Driver) DB() *sql.DB {
	d.dbOnce.Do(func() {
		d.db = stdlib.OpenDBFromPool(d.pool)
		// Every connection database/sql holds, idle or not, is one taken
		// from the pool the engine also claims jobs on. By default it
		// keeps 2 idle and closes the rest after each burst, so under
		// load connections churn between the two. Let it keep up to
		// half the pool idle (for a minute) and use at most three
		// quarters, so that the engine always has connections left.
		// A pool too small to share keeps nothing idle.
		n := int(d.pool.Config().MaxConns)
		if n < 4 {
			d.db.SetMaxOpenConns(n)
			d.db.SetMaxIdleConns(0)
			return
		}
		d.db.SetMaxOpenConns(n * 3 / 4)
		d.db.SetMaxIdleConns(n / 2)
		d.db.SetConnMaxIdleTime(time.Minute)
	})
	return d.db
}

// Close closes the database/sql handle, if any, and the pool, waiting for
// connections in use to be released.
func (d *Driver) Close() error {
	var err error
	d.dbOnce.Do(func() {}) // no DB() after Close
	if d.db != nil {
		err = d.db.Close()
	}
	d.pool.Close()
	return err
}

// SQLSTATE codes the driver explains.
const (
	codeInsufficientPrivilege = "42501"
	codeInvalidPassword       = "28P01"
	codeInvalidAuthorization  = "28000"
	codeInvalidCatalogName    = "3D000"
	codeInvalidSchemaName     = "3F000"
	codeUndefinedTable        = "42P01"
	codeDeadlock              = "40P01"
	codeSerialization         = "40001"
	codeUntranslatable        = "22P05"
	codeTooManyConnections    = "53300"
	codeCannotConnectNow      = "57P03"
)

// explain wraps err with what the driver was doing and, for the failures
// a user can fix, what is wrong: an unreachable server, refused
// credentials, a missing database, missing privileges.
func (d *Driver) explain(what string, err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := " (SQLSTATE " + pgErr.Code + ")"
		switch pgErr.Code {
		case codeInvalidPassword, codeInvalidAuthorization:
			return &dbError{fmt.Sprintf("postgres %s: %s: authentication failed for user %q: %s%s; check the user and password",
				d.addr, what, d.user, pgErr.Message, code), err}
		case codeInvalidCatalogName:
			return &dbError{fmt.Sprintf("postgres %s: %s: database %q does not exist%s; create it or fix the URL",
				d.addr, what, d.dbname, code), err}
		case codeInsufficientPrivilege:
			return &dbError{fmt.Sprintf("postgres %s/%s: %s: permission denied for user %q: %s%s; %s",
				d.addr, d.dbname, what, d.user, pgErr.Message, code, d.privilegeHint()), err}
		case codeTooManyConnections, codeCannotConnectNow:
			return &dbError{fmt.Sprintf("postgres %s: %s: the server refuses connections: %s%s",
				d.addr, what, pgErr.Message, code), err}
		}
		return fmt.Errorf("postgres %s/%s: %s: %w", d.addr, d.dbname, what, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("postgres %s: %s: %w", d.addr, what, err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		cause := err
		var ne *net.OpError
		if errors.As(err, &ne) {
			cause = ne
		} else if errors.Is(err, context.DeadlineExceeded) {
			cause = fmt.Errorf("no answer within the connect timeout: %w", err)
		} else if inner := ce.Unwrap(); inner != nil {
			cause = inner
		}
		return &dbError{fmt.Sprintf("postgres: %s: server %s is unreachable (is PostgreSQL running there?): %v", what, d.addr, cause), err}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("postgres %s: %s: the server did not answer in time: %w", d.addr, what, err)
	}
	return fmt.Errorf("postgres %s/%s: %s: %w", d.addr, d.dbname, what, err)
}

// dbError is an explained error: a message of its own, and the cause for
// errors.Is and errors.As.
type dbError struct {
	msg string
	err error
}

func (e *dbError) Error() string { return e.msg }
func (e *dbError) Unwrap() error { return e.err }

func (d *Driver) privilegeHint() string {
	schema := d.opts.Schema
	if schema == "" {
		schema = "public"
	}
	return fmt.Sprintf("the role needs USAGE and CREATE on schema %s to migrate, and read/write on kiln's tables to run; run kiln migrate as the schema's owner or GRANT them", schema)
}

// Redact hides the password of a postgres URL or key=value string.
func Redact(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		at := strings.LastIndexByte(rest, '@')
		if at >= 0 {
			if user, _, ok := strings.Cut(rest[:at], ":"); ok {
				s = s[:i+3] + user + ":xxxxx" + rest[at:]
			}
		}
	}
	// Also password=… in the query or in a key=value string.
	const key = "password="
	if j := indexFold(s, key); j >= 0 {
		end := j + len(key)
		k := end
		for k < len(s) && s[k] != '&' && s[k] != ' ' {
			k++
		}
		s = s[:end] + "xxxxx" + s[k:]
	}
	return s
}

// redactErr replaces the passwords in raw, wherever they appear in err's
// message, with xxxxx: pgx echoes a connection string it cannot parse.
func redactErr(err error, raw string) error {
	msg := err.Error()
	for _, pw := range passwords(raw) {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
		if dec, err := url.PathUnescape(pw); err == nil && dec != "" {
			msg = strings.ReplaceAll(msg, dec, "xxxxx")
		}
	}
	return errors.New(msg)
}

// passwords returns the candidate passwords in a connection string: the
// URL's user:password@ and every password= value.
func passwords(raw string) []string {
	var out []string
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
				out = append(out, pw)
			}
		}
	}
	rest := raw
	for {
		i := indexFold(rest, "password=")
		if i < 0 {
			return out
		}
		rest = rest[i+len("password="):]
		end := strings.IndexAny(rest, " &'\"")
		if end < 0 {
			end = len(rest)
		}
		if end > 0 {
			out = append(out, rest[:end])
		}
	}
}

// indexFold is strings.Index ignoring ASCII case; unlike searching a
// strings.ToLower copy, its result is a valid index into s whatever bytes
// s holds.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		match := true
		for k := 0; k < len(sub); k++ {
			a, b := s[i+k], sub[k]
			if 'A' <= a && a <= 'Z' {
				a += 'a' - 'A'
			}
			if a != b {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}
