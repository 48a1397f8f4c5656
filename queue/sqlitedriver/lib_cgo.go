//go:build cgo && !kiln_purego

package sqlitedriver

import (
	"database/sql"
	"fmt"
	"net/url"

	"github.com/mattn/go-sqlite3" // cgo SQLite: the faster library where a C compiler exists
)

const libName = "kiln-sqlite3"

func init() {
	// The cgo library has no DSN parameter for these pragmas, so every
	// connection runs them as it opens.
	sql.Register(libName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec(connPragmas, nil)
		return err
	}})
}

// Library names the SQLite library compiled in.
const Library = "mattn/go-sqlite3 (cgo)"

func libDSN(path string, opts Options, readOnly bool) string {
	sync := "NORMAL"
	if opts.Strict {
		sync = "FULL"
	}
	v := url.Values{}
	v.Set("_busy_timeout", fmt.Sprint(opts.BusyTimeout.Milliseconds()))
	v.Set("_synchronous", sync)
	v.Set("_foreign_keys", "1") // application tables (users → orders) rely on them
	v.Set("_txlock", "immediate")
	v.Set("_cache_size", "-16000")
	if readOnly {
		v.Set("_query_only", "1")
		v.Set("_txlock", "deferred")
	}
	return "file:" + escapePath(path) + "?" + v.Encode()
}
