// Package crashpoint lets a test kill a kiln process at a named point of
// its work, to check what a crash exactly there leaves behind (work
// committed, its response not yet stored, say).
//
// A point is armed by the environment variable KILN_CRASH_AT, read once
// when the process starts, naming it. The first time an armed point is
// reached the process kills itself with SIGKILL: no deferred function,
// no shutdown hook and no buffered write runs, as when the machine loses
// the process. A point that is not armed costs one comparison.
package crashpoint

import (
	"os"
	"sync"
)

// Env is the environment variable that arms a point.
const Env = "KILN_CRASH_AT"

var armed = os.Getenv(Env)

var once sync.Once

// Hit kills the process if the point name is armed.
func Hit(name string) {
	if armed == "" || armed != name {
		return
	}
	once.Do(func() {
		p, err := os.FindProcess(os.Getpid())
		if err == nil {
			_ = p.Kill()
		}
	})
	select {} // the kill is asynchronous: do nothing more meanwhile
}
