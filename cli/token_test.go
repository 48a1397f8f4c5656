package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/tokens"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

var tokenLineRE = regexp.MustCompile(`^kiln_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$`)

// authenticate checks token against the SQLite database at path, as the
// API would.
func authenticate(t *testing.T, path, token string) (httpapi.Principal, error) {
	t.Helper()
	d, err := sqlitedriver.Open(path, sqlitedriver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	svc := tokens.NewService(tokens.NewStore(database.New(d.DB(), d.ReadDB(), database.SQLite)), tokens.Options{})
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return svc.Authenticate(ctx, token)
}

func listTokens(t *testing.T, db string) []tokenJSON {
	t.Helper()
	var out []tokenJSON
	raw := mustKiln(t, "token", "list", "--json", "--db", db)
	if err := json.Unmarshal([]byte(raw), &out); err != nil || out == nil {
		t.Fatalf("token list --json printed %q: %v", raw, err)
	}
	return out
}

func TestTokenCommands(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "kiln.db")

	// A fresh install: create makes the database.
	r := kiln(t, nil, "token", "create", "--scope", "admin", "--name", "ops team", "--ttl", "30d", "--db", db)
	if r.code != 0 {
		t.Fatalf("create: %s", r)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	tok := lines[len(lines)-1]
	m := tokenLineRE.FindStringSubmatch(tok)
	if m == nil || len(lines) != 1 {
		t.Fatalf("stdout is not the token alone on one line: %q", r.stdout)
	}
	id := m[1]
	if !strings.Contains(r.stderr, "created token "+id) || !strings.Contains(r.stderr, "scope admin") || strings.Contains(r.stderr, tok) {
		t.Errorf("stderr %q: want the id and scope, never the token", r.stderr)
	}
	p, err := authenticate(t, db, tok)
	if err != nil || p != (httpapi.Principal{TokenID: id, Name: "ops team", Scope: httpapi.ScopeAdmin}) {
		t.Fatalf("the printed token authenticates as %+v, %v", p, err)
	}

	reader := mustKiln(t, "token", "create", "--scope", "read", "--db", db)
	readerID := tokenLineRE.FindStringSubmatch(strings.TrimSpace(reader))[1]

	secret := tok[len("kiln_")+12+1:]
	out := mustKiln(t, "token", "list", "--db", db)
	if strings.Contains(out, secret) {
		t.Fatalf("list shows the secret:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^ID\s+NAME\s+SCOPE\s+STATE\s+CREATED\s+EXPIRES\s+REVOKED\s+LAST USED$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^`+id+`\s+"ops team"\s+admin\s+active\s+`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^`+readerID+`\s+-\s+read\s+active\s+.*\snever\s+-\s+never$`).MatchString(out) {
		t.Errorf("list:\n%s", out)
	}
	list := listTokens(t, db)
	if len(list) != 2 || list[0].ID != readerID || list[1].ID != id {
		t.Fatalf("list --json, newest first: %+v", list)
	}
	got := list[1]
	if got.Name != "ops team" || got.Scope != "admin" || got.State != "active" || got.ExpiresAt == nil ||
		got.ExpiresAt.Sub(got.CreatedAt) != 30*24*time.Hour || got.RevokedAt != nil {
		t.Errorf("listed %+v", got)
	}
	raw := mustKiln(t, "token", "list", "--json", "--db", db)
	if strings.Contains(raw, secret) || strings.Contains(raw, "hash") {
		t.Errorf("list --json shows the secret or its hash:\n%s", raw)
	}

	if out := mustKiln(t, "token", "revoke", id, "--db", db); out != "revoked token "+id+"\n" {
		t.Errorf("revoke printed %q", out)
	}
	if _, err := authenticate(t, db, tok); !errors.Is(err, httpapi.ErrUnauthenticated) {
		t.Errorf("revoked token: %v", err)
	}
	if list := listTokens(t, db); list[1].State != "revoked" || list[1].RevokedAt == nil {
		t.Errorf("after revoke: %+v", list[1])
	}
	// Again, and by the whole token: it succeeds and changes nothing.
	mustKiln(t, "token", "revoke", tok, "--db", db)
	if _, err := authenticate(t, db, strings.TrimSpace(reader)); err != nil {
		t.Errorf("the other token after revoking one: %v", err)
	}

	r = kiln(t, nil, "token", "revoke", "0123456789ab", "--db", db)
	if r.code != 1 || !strings.Contains(r.stderr, "token 0123456789ab not found") {
		t.Errorf("revoke unknown: %s", r)
	}
	// An empty installation lists no tokens as an empty array.
	empty := filepath.Join(t.TempDir(), "empty.db")
	mustKiln(t, "migrate", "--db", empty)
	if out := mustKiln(t, "token", "list", "--json", "--db", empty); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list --json: %q", out)
	}
}

func TestTokenBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	mustKiln(t, "migrate", "--db", good)
	secretish := "kiln_0123456789ab_abcdefghijklmnopqrstuvwxyz"
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"no scope", nil, []string{"token", "create"}, 2, "--scope is required"},
		{"bad scope", nil, []string{"token", "create", "--scope", "root"}, 2, `unknown scope "root"`},
		{"public scope", nil, []string{"token", "create", "--scope", "public"}, 2, `unknown scope "public"`},
		{"bad scope from env", []string{"KILN_SCOPE=superuser"}, []string{"token", "create"}, 2, "superuser"},
		{"bad ttl", nil, []string{"token", "create", "--scope", "read", "--ttl", "soon"}, 2, "--ttl"},
		{"bad ttl days", nil, []string{"token", "create", "--scope", "read", "--ttl", "1.5d"}, 2, "--ttl"},
		{"huge ttl days", nil, []string{"token", "create", "--scope", "read", "--ttl", "99999999999d"}, 2, "--ttl"},
		{"negative ttl", nil, []string{"token", "create", "--scope", "read", "--ttl", "-1h"}, 2, "--ttl must not be negative"},
		{"negative ttl days", nil, []string{"token", "create", "--scope", "read", "--ttl", "-3d"}, 2, "--ttl"},
		{"name with a newline", nil, []string{"token", "create", "--scope", "read", "--name", "a\nb"}, 2, "control"},
		{"name too long", nil, []string{"token", "create", "--scope", "read", "--name", strings.Repeat("n", 101)}, 2, "at most 100"},
		{"create with an argument", nil, []string{"token", "create", "extra", "--scope", "read"}, 2, "unknown command"},
		{"revoke without id", nil, []string{"token", "revoke"}, 2, "accepts 1 arg(s)"},
		{"revoke bad id", nil, []string{"token", "revoke", "ABC"}, 2, "want a token id"},
		{"revoke a mangled token", nil, []string{"token", "revoke", secretish}, 2, "want a token id"},
		{"unknown subcommand", nil, []string{"token", "delete", "x"}, 2, `unknown command "delete"`},
		{"list with an argument", nil, []string{"token", "list", "all"}, 2, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := filepath.Join(t.TempDir(), "kiln.db")
			r := kiln(t, tc.env, append(tc.args, "--db", db)...)
			noPanic(t, r)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, want %d with %q: %s", r.code, tc.code, tc.want, r)
			}
			if strings.Contains(r.stderr, "abcdefghijklmnop") {
				t.Errorf("the error echoes what may be a secret: %s", r.stderr)
			}
			if _, err := os.Stat(db); !os.IsNotExist(err) {
				t.Errorf("a rejected command created the database (stat: %v)", err)
			}
		})
	}
	for _, args := range [][]string{{"token", "list"}, {"token", "revoke", "0123456789ab"}} {
		missing := filepath.Join(dir, "typo.db")
		r := kiln(t, nil, append(args, "--db", missing)...)
		if r.code != 1 || !strings.Contains(r.stderr, "no kiln database at "+missing) {
			t.Errorf("%v on a missing database: %s", args, r)
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Errorf("%v created the database", args)
		}
	}
	if list := listTokens(t, good); len(list) != 0 {
		t.Errorf("rejected commands created tokens: %+v", list)
	}
}

// FuzzLifetime checks that --ttl never panics and that a day count is
// accepted only within bounds.
func FuzzLifetime(f *testing.F) {
	for _, s := range []string{"90d", "12h", "0", "0d", "-1d", "1.5d", "d", "+3d", "36500d", "36501d", "99999999999999999999d", "1h30m", "-5m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var l lifetime
		if err := l.Set(s); err != nil {
			return
		}
		if strings.HasSuffix(s, "d") && (l < 0 || time.Duration(l) > maxLifetime) {
			t.Errorf("%q accepted as %s", s, time.Duration(l))
		}
		if l.String() == "" {
			t.Errorf("%q has no spelling", s)
		}
	})
}
