package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnhq/kiln/internal/jobkinds"
	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// FuzzParseDSN checks that any --db value either is refused or yields a
// usable file path.
func FuzzParseDSN(f *testing.F) {
	for _, s := range []string{
		"kiln.db", "/var/lib/kiln/kiln.db", "sqlite:///tmp/kiln.db", "sqlite://rel/kiln.db",
		"sqlite:kiln.db", "file:kiln.db?synchronous=full", "kiln.db?synchronous=NORMAL",
		"", " ", "?", "sqlite://", "file:?synchronous=full", "a.db?synchronous=", "a.db?x=%zz",
		"a.db?synchronous=full&synchronous=off", "a\x00b.db", "a.db?cache=shared",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		path, opts, err := sqlitedriver.ParseDSN(dsn)
		if err != nil {
			if path != "" {
				t.Errorf("ParseDSN(%q) returned path %q with error %v", dsn, path, err)
			}
			return
		}
		if path == "" || strings.ContainsRune(path, 0) {
			t.Errorf("ParseDSN(%q) = %q without error", dsn, path)
		}
		if strings.HasSuffix(dsn, "?synchronous=full") && strings.Count(dsn, "?") == 1 && !opts.Strict {
			t.Errorf("ParseDSN(%q): synchronous=full not honoured", dsn)
		}
	})
}

// FuzzParseQueues checks that --queues either is refused as a usage error
// or yields queues the engine accepts.
func FuzzParseQueues(f *testing.F) {
	for _, s := range []string{
		"default=100", "a=1,b=2", " a = 1 , ,b=10000", "", ",", "x", "a=0", "a=10001", "a=1,a=2",
		"=1", "a b=1", "a=1=2", "a=-1", "a=0x10", "é=1", "a\t=1", strings.Repeat("q", 201) + "=1",
	} {
		f.Add(s)
	}
	w := queue.NewWorkers()
	jobkinds.Register(w)
	f.Fuzz(func(t *testing.T, s string) {
		qs, err := parseQueues(s)
		if err != nil {
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("parseQueues(%q): %v is not a usage error", s, err)
			}
			if qs != nil {
				t.Errorf("parseQueues(%q) returned queues with an error", s)
			}
			return
		}
		if len(qs) == 0 {
			t.Fatalf("parseQueues(%q) returned no queue and no error", s)
		}
		for name, q := range qs {
			if name == "" || q.MaxWorkers < 1 || q.MaxWorkers > 10000 {
				t.Errorf("parseQueues(%q): queue %q with %d workers", s, name, q.MaxWorkers)
			}
		}
		// The engine must accept what the flag parser accepted; otherwise
		// the user gets an engine error instead of a usage error.
		if _, err := queue.New(queue.Config{Driver: nopDriver{}, Workers: w, Queues: qs}); err != nil {
			t.Errorf("parseQueues(%q) accepted queues the engine refuses: %v", s, err)
		}
	})
}

// nopDriver satisfies queue.Config's need for a driver in tests that only
// build a client; none of its methods is called.
type nopDriver struct{ queue.Driver }
