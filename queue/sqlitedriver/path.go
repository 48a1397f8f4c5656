package sqlitedriver

import "strings"

// escapePath makes a file path safe inside a "file:" URI: '?' and '#'
// would otherwise start the query or fragment, '%' an escape.
func escapePath(p string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return r.Replace(p)
}
