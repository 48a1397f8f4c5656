//go:build !cgo || kiln_purego

package sqlitedriver

import (
	"fmt"
	"net/url"

	_ "modernc.org/sqlite" // pure-Go SQLite: used where cgo is unavailable
)

const libName = "sqlite"

// Library names the SQLite library compiled in.
const Library = "modernc.org/sqlite (pure Go)"

func libDSN(path string, opts Options, readOnly bool) string {
	sync := "NORMAL"
	if opts.Strict {
		sync = "FULL"
	}
	v := url.Values{}
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", opts.BusyTimeout.Milliseconds()))
	v.Add("_pragma", "synchronous("+sync+")")
	v.Add("_pragma", "foreign_keys(1)") // application tables (users → orders) rely on them
	v.Add("_pragma", "cache_size(-16000)")
	v.Add("_pragma", "wal_autocheckpoint(0)")
	v.Add("_pragma", "journal_size_limit(67108864)")
	v.Set("_txlock", "immediate")
	if readOnly {
		v.Add("_pragma", "query_only(1)")
		v.Set("_txlock", "deferred")
	}
	return "file:" + escapePath(path) + "?" + v.Encode()
}
