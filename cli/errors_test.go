package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// TestBadInput checks that kiln refuses bad input with a clear message and
// a non-zero status, never a panic.
func TestBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	openDB(t, good)

	afile := filepath.Join(dir, "afile")
	if err := os.WriteFile(afile, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("this is not a SQLite database\n", 200)), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		env  []string
		args []string
		code int    // exact status, or -2 for any non-zero
		want string // substring of stderr
	}{
		{"unknown kind", nil, []string{"enqueue", "nope", "--db", good}, 2, `unknown job kind "nope"`},
		{"args not JSON", nil, []string{"enqueue", "sleep", "{ms:", "--db", good}, 2, "not valid JSON"},
		{"sleep ms not a number", nil, []string{"enqueue", "sleep", `{"ms":"x"}`, "--db", good}, 2, "cannot unmarshal string"},
		{"sleep ms negative", nil, []string{"enqueue", "sleep", `{"ms":-1}`, "--db", good}, 2, "ms must be between 0 and 86400000"},
		{"sleep unknown field", nil, []string{"enqueue", "sleep", `{"ms":1,"mss":2}`, "--db", good}, 2, `unknown field "mss"`},
		{"sleep args not an object", nil, []string{"enqueue", "sleep", `[1]`, "--db", good}, 2, "invalid job"},
		{"fail times too big", nil, []string{"enqueue", "fail", `{"times":1001}`, "--db", good}, 2, "times must be between 0 and 1000"},
		{"priority out of range", nil, []string{"enqueue", "noop", "--priority", "5000", "--db", good}, 2, "priority 5000"},
		{"negative run-in", nil, []string{"enqueue", "noop", "--run-in", "-1s", "--db", good}, 2, "--run-in"},
		{"bad queue name", nil, []string{"enqueue", "noop", "--queue", "a b", "--db", good}, 2, `queue "a b"`},

		{"db under a file", nil, []string{"migrate", "--db", filepath.Join(afile, "sub", "kiln.db")}, 1, "not a directory"},
		{"db under /proc", nil, []string{"migrate", "--db", "/proc/kiln-test/kiln.db"}, 1, "/proc/kiln-test"},
		{"db not sqlite", nil, []string{"jobs", "list", "--db", junk}, 1, "is not a SQLite database"},
		{"db is a directory", nil, []string{"migrate", "--db", dir}, 1, "is a directory"},
		{"jobs list of a missing db", nil, []string{"jobs", "list", "--db", filepath.Join(dir, "typo.db")}, 1, "no kiln database at " + filepath.Join(dir, "typo.db")},
		{"jobs show in a missing data dir", nil, []string{"jobs", "show", "1", "--data-dir", filepath.Join(dir, "kiln-dta")}, 1, "check --db or --data-dir"},
		{"bad log level on jobs", nil, []string{"jobs", "list", "--db", good, "--log-level", "verbose"}, 2, "--log-level"},
		{"bad log format from env", []string{"KILN_LOG_FORMAT=yaml"}, []string{"jobs", "list", "--db", good}, 2, "--log-format"},
		{"postgres unreachable", nil, []string{"migrate", "--db", "postgres://kiln:secret@127.0.0.1:1/kiln?connect_timeout=2"}, 1, "server 127.0.0.1:1 is unreachable"},
		{"postgres unreachable jobs", nil, []string{"jobs", "list", "--db", "postgresql://kiln:secret@127.0.0.1:1/kiln"}, 1, "127.0.0.1:1"},
		{"postgres bad URL", nil, []string{"migrate", "--db", "postgresql://kiln:secret@localhost:port/kiln"}, 2, "kiln:xxxxx@"},
		{"postgres bad parameter", nil, []string{"migrate", "--db", "postgres://kiln:secret@localhost/kiln?kiln_poll_only=perhaps"}, 2, "kiln_poll_only must be true or false"},
		{"mysql", nil, []string{"migrate", "--db", "mysql://x"}, 2, `unsupported database scheme "mysql"`},
		{"bad sqlite parameter", nil, []string{"migrate", "--db", "sqlite://" + good + "?cache=shared"}, 2, `unknown parameter "cache"`},

		{"queues without count", nil, []string{"worker", "--db", good, "--queues", "x"}, 2, `"x" is not name=workers`},
		{"queues zero workers", nil, []string{"worker", "--db", good, "--queues", "a=0"}, 2, `workers for "a"`},
		{"queues bad name", nil, []string{"worker", "--db", good, "--queues", "a b=1"}, 2, `queue name "a b"`},
		{"queues twice", nil, []string{"worker", "--db", good, "--queues", "a=1,a=2"}, 2, "given twice"},
		{"lease too short", nil, []string{"worker", "--db", good, "--lease", "1ms"}, 2, "--lease must be at least 3s"},
		{"negative shutdown timeout", nil, []string{"serve", "--db", good, "--shutdown-timeout", "-1s"}, 2, "--shutdown-timeout"},
		{"image sizes not numbers", nil, []string{"serve", "--db", good, "--image-sizes", "small"}, 2, "--image-sizes"},
		{"image size too large", nil, []string{"worker", "--db", good, "--image-sizes", "64,100000"}, 2, "--image-sizes"},
		{"image upload limit", nil, []string{"serve", "--db", good, "--image-max-upload", "lots"}, 2, "--image-max-upload"},
		{"image max pixels", nil, []string{"worker", "--db", good, "--image-max-pixels", "0"}, 2, "--image-max-pixels"},
		{"image decoding", nil, []string{"serve", "--db", good, "--image-max-decoding", "-1"}, 2, "--image-max-decoding"},
		{"video upload limit", nil, []string{"serve", "--db", good, "--video-max-upload", "0"}, 2, "--video-max-upload"},
		{"ffmpeg timeout", nil, []string{"worker", "--db", good, "--ffmpeg-timeout", "-1s"}, 2, "--ffmpeg-timeout"},
		{"webhook timeout", nil, []string{"serve", "--db", good, "--webhook-timeout", "0s"}, 2, "--webhook-timeout"},
		{"webhook allow networks", nil, []string{"serve", "--db", good, "--webhook-allow-networks", "10.0.0.0/8,127.0.0.1"}, 2, `--webhook-allow-networks: "127.0.0.1" is not a CIDR range`},
		{"bad env webhook allow networks", []string{"KILN_WEBHOOK_ALLOW_NETWORKS=10.0.0.0/33"}, []string{"worker", "--db", good}, 2, "--webhook-allow-networks"},
		{"bad env image sizes", []string{"KILN_IMAGE_SIZES=1,2"}, []string{"worker", "--db", good}, 2, "--image-sizes"},
		{"bad log level", nil, []string{"worker", "--db", good, "--log-level", "loud"}, 2, "--log-level"},
		{"unknown flag", nil, []string{"worker", "--db", good, "--bogus"}, 2, "unknown flag: --bogus"},
		{"unknown command", nil, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown subcommand", nil, []string{"jobs", "lsit", "--db", good}, 2, "did you mean list?"},
		{"extra argument", nil, []string{"migrate", "now", "--db", good}, 2, `unknown command "now" for "kiln migrate"`},
		{"missing argument", nil, []string{"enqueue", "--db", good}, 2, "accepts between 1 and 2 arg(s)"},
		{"too many arguments", nil, []string{"jobs", "show", "1", "2", "--db", good}, 2, "accepts 1 arg(s)"},
		{"bad duration flag", nil, []string{"worker", "--db", good, "--lease", "banana"}, 2, "--lease"},
		{"bad env duration", []string{"KILN_LEASE=banana"}, []string{"worker", "--db", good}, 2, "KILN_LEASE"},
		{"bad env queues", []string{"KILN_QUEUES=x"}, []string{"worker", "--db", good}, 2, "--queues"},
		{"bad env int", []string{"KILN_PRIORITY=high"}, []string{"enqueue", "noop", "--db", good}, 2, "KILN_PRIORITY"},
		{"bad env log format", []string{"KILN_LOG_FORMAT=xml"}, []string{"worker", "--db", good}, 2, "--log-format"},

		{"show id zero", nil, []string{"jobs", "show", "0", "--db", good}, 2, "positive integer"},
		{"show id not a number", nil, []string{"jobs", "show", "abc", "--db", good}, 2, "positive integer"},
		{"show missing job", nil, []string{"jobs", "show", "999999", "--db", good}, -2, "job 999999 not found"},
		{"retry missing job", nil, []string{"jobs", "retry", "999999", "--db", good}, -2, "job 999999 not found"},
		{"cancel missing job", nil, []string{"jobs", "cancel", "999999", "--db", good}, -2, "job 999999 not found"},
		{"list bad state", nil, []string{"jobs", "list", "--state", "done", "--db", good}, 2, `unknown job state "done"`},
		{"list bad limit", nil, []string{"jobs", "list", "--limit", "0", "--db", good}, 2, "--limit"},
		{"isolate unknown queue", nil, []string{"serve", "--db", good, "--queues", "default=1,images=1", "--isolate-queues", "video"}, 2, `--isolate-queues: "video" is not one of --queues`},
		{"isolate every queue", nil, []string{"serve", "--db", good, "--queues", "images=1", "--isolate-queues", "images"}, 2, "leaving serve none"},
		{"isolate nice too high", nil, []string{"serve", "--db", good, "--isolate-queues", "images", "--isolate-priority", "20"}, 2, "--isolate-priority"},
		{"isolate nice negative", nil, []string{"serve", "--db", good, "--isolate-queues", "images", "--isolate-priority", "-1"}, 2, "--isolate-priority"},
		{"isolate priority a word", nil, []string{"serve", "--db", good, "--isolate-queues", "images", "--isolate-priority", "low"}, 2, "--isolate-priority"},
		{"isolate admin off loopback without a token", nil, []string{"serve", "--db", good, "--isolate-queues", "images", "--isolate-admin-addr", "0.0.0.0:6061"}, 2, "--isolate-admin-addr"},
		{"isolate admin on serve's", nil, []string{"serve", "--db", good, "--isolate-queues", "images", "--admin-addr", "127.0.0.1:6061", "--isolate-admin-addr", "127.0.0.1:6061"}, 2, "serve's --admin-addr too"},
		{"bench bad mode", nil, []string{"bench", "--mode", "fast"}, 2, "--mode"},
		{"bench cpuprofile in a missing directory", nil, []string{"bench", "--cpuprofile", "/nonexistent/dir/cpu.pprof"}, 2, "--cpuprofile"},
		{"bench latency without jobs", nil, []string{"bench", "--mode", "latency", "--rate", "1", "--duration", "500ms"}, 2, "inserts no job"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := kiln(t, tc.env, tc.args...)
			noPanic(t, r)
			switch {
			case r.code == 0:
				t.Fatalf("succeeded, want an error: %s", r)
			case tc.code > 0 && r.code != tc.code:
				t.Errorf("exit status %d, want %d: %s", r.code, tc.code, r)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr does not mention %q: %s", tc.want, r)
			}
			if strings.Contains(r.stderr+r.stdout, "secret") {
				t.Errorf("output shows the password: %s", r)
			}
		})
	}
}

// TestRejectedFlagsTouchNoDatabase checks that flags are validated before
// the database is opened: a typo must not create or migrate a database.
func TestRejectedFlagsTouchNoDatabase(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"worker", "--queues", "x"},
		{"worker", "--lease", "1ms"},
		{"serve", "--poll-interval", "1us"},
		{"serve", "--log-format", "xml"},
		{"serve", "--image-sizes", "0"},
		{"worker", "--video-max-upload", "-5"},
	} {
		db := filepath.Join(t.TempDir(), "kiln.db")
		r := kiln(t, nil, append(args, "--db", db)...)
		if r.code != 2 {
			t.Errorf("%v: %s; want exit 2", args, r)
		}
		if _, err := os.Stat(db); !os.IsNotExist(err) {
			t.Errorf("%v created the database %s (stat: %v)", args, db, err)
		}
	}
}

// TestNewerSchema checks that every command refuses a database migrated by
// a newer kiln.
func TestNewerSchema(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "kiln.db")
	d, err := sqlitedriver.Open(db, sqlitedriver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB().ExecContext(ctx, "INSERT INTO kiln_migrations (version, applied_at) VALUES (999, 0)"); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"migrate"},
		{"enqueue", "noop"},
		{"jobs", "list"},
		{"jobs", "show", "1"},
		{"jobs", "retry", "1"},
		{"jobs", "cancel", "1"},
		{"worker"},
		{"serve", "--addr", "127.0.0.1:0"},
		{"bench", "--jobs", "10"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := kiln(t, nil, append(args, "--db", db)...)
			noPanic(t, r)
			if r.code == 0 {
				t.Fatalf("succeeded on a newer schema: %s", r)
			}
			if !strings.Contains(r.stderr, "schema version 999") || !strings.Contains(r.stderr, "newer") {
				t.Errorf("stderr does not say the schema is newer: %s", r)
			}
		})
	}
}
