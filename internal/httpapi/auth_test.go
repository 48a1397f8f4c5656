package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// fakeAuth is an Authenticator over a fixed set of tokens. The token
// "explode" fails as a broken database would.
type fakeAuth struct {
	mu     sync.Mutex
	tokens map[string]Principal
	seen   []string // every token asked about
}

const leakyFailure = "dial tcp 10.1.2.3:5432: password authentication failed for user kiln (hunter2)"

func (f *fakeAuth) Authenticate(_ context.Context, token string) (Principal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, token)
	if token == "explode" {
		return Principal{}, errors.New(leakyFailure)
	}
	p, ok := f.tokens[token]
	if !ok {
		return Principal{}, fmt.Errorf("token %.4s…: %w", token, ErrUnauthenticated)
	}
	return p, nil
}

func (f *fakeAuth) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// whoami is a module whose routes report the caller, to check that the
// principal reaches handlers and that module routes get default scopes.
type whoami struct{}

func (whoami) Routes() []Route {
	h := func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		WriteJSON(w, r, http.StatusOK, map[string]any{"ok": ok, "token": p.TokenID, "name": p.Name, "scope": p.Scope.String()})
	}
	return []Route{
		{Pattern: "GET " + Prefix + "/whoami", Handler: h},
		{Pattern: "DELETE " + Prefix + "/whoami", Handler: h},
		{Pattern: "PATCH " + Prefix + "/whoami", Handler: h},
		// ScopePublic in a Route means "the default", never "no token".
		{Pattern: "POST " + Prefix + "/whoami", Handler: h, Scope: ScopePublic},
	}
}

func (whoami) OpenAPI() []byte { return []byte(`{"paths":{}}`) }

// newAuthEnv is newEnv with authentication: the tokens "read", "write"
// and "admin" have those scopes.
func newAuthEnv(t *testing.T) (*env, *fakeAuth) {
	t.Helper()
	auth := &fakeAuth{tokens: map[string]Principal{
		"read":  {TokenID: "aaaaaaaaaaaa", Name: "reader", Scope: ScopeRead},
		"write": {TokenID: "bbbbbbbbbbbb", Name: "writer", Scope: ScopeWrite},
		"admin": {TokenID: "cccccccccccc", Name: "admin", Scope: ScopeAdmin},
	}}
	e := &env{t: t, logs: &syncBuffer{}, release: make(chan struct{})}
	var once sync.Once
	e.releaseJobs = func() { once.Do(func() { close(e.release) }) }
	e.client = newClient(t, e.release)
	t.Cleanup(e.releaseJobs)
	a, err := New(Config{
		Jobs: e.client, Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), BodyLimit: 4096,
		Auth: auth, Modules: []Module{whoami{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	e.api = a
	e.srv = httptest.NewServer(a)
	t.Cleanup(e.srv.Close)
	return e, auth
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// unauthorized checks a 401: problem+json with the Bearer challenge.
func unauthorized(t *testing.T, r response) problem {
	t.Helper()
	p := problemOf(t, r, http.StatusUnauthorized)
	if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="kiln"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	if p.Code != CodeUnauthorized {
		t.Errorf("code %s", p.Code)
	}
	return p
}

func TestAuthMissingOrMalformedHeader(t *testing.T) {
	t.Parallel()
	e, auth := newAuthEnv(t)
	p := unauthorized(t, e.do("GET", "/api/v1/jobs", ""))
	if !strings.Contains(p.Detail, "Authorization: Bearer") || !strings.Contains(p.Detail, "kiln token create") {
		t.Errorf("the 401 does not say how to authenticate: %q", p.Detail)
	}
	for _, hdr := range []string{
		"Basic YWRtaW46YWRtaW4=",
		"admin",
		"Bearer",
		"Bearer ",
		"Bearer    ",
		"Token admin",
		"Beareradmin",
	} {
		r := e.do("GET", "/api/v1/jobs", "", "Authorization", hdr)
		unauthorized(t, r)
		if strings.Contains(string(r.body), "YWRtaW46") {
			t.Errorf("%q: the 401 echoes the credentials: %s", hdr, r.body)
		}
	}
	if got := auth.asked(); len(got) != 0 {
		t.Errorf("malformed headers reached the authenticator: %q", got)
	}
	// The scheme is case-insensitive and surrounding blanks are ignored.
	for _, hdr := range []string{"bearer read", "BEARER read", "Bearer  read "} {
		if r := e.do("GET", "/api/v1/jobs", "", "Authorization", hdr); r.status != http.StatusOK {
			t.Errorf("%q: status %d: %s", hdr, r.status, r.body)
		}
	}
}

func TestAuthInvalidToken(t *testing.T) {
	t.Parallel()
	e, _ := newAuthEnv(t)
	r := e.do("GET", "/api/v1/jobs", "", bearer("kiln_000000000000_nope")...)
	p := unauthorized(t, r)
	if !strings.Contains(p.Detail, "invalid, revoked or expired") {
		t.Errorf("detail %q", p.Detail)
	}
	if strings.Contains(string(r.body), "kiln_0000") {
		t.Errorf("the 401 echoes the token: %s", r.body)
	}
	// Authentication belongs to routes: an unknown path is a 404
	// whatever the token.
	problemOf(t, e.do("GET", "/api/v1/nope", "", bearer("bad")...), http.StatusNotFound)
}

func TestAuthScopes(t *testing.T) {
	t.Parallel()
	e, _ := newAuthEnv(t)
	job := `{"kind":"noop"}`
	tests := []struct {
		method, path, body string
		status             map[string]int // token → status
	}{
		{"GET", "/api/v1/jobs", "", map[string]int{"read": 200, "write": 200, "admin": 200}},
		{"GET", "/api/v1/queues", "", map[string]int{"read": 200, "write": 200, "admin": 200}},
		{"POST", "/api/v1/jobs", job, map[string]int{"read": 403, "write": 201, "admin": 201}},
		{"POST", "/api/v1/queues/default/pause", "", map[string]int{"read": 403, "write": 403, "admin": 200}},
		{"POST", "/api/v1/queues/default/resume", "", map[string]int{"read": 403, "write": 403, "admin": 200}},
		{"GET", "/api/v1/whoami", "", map[string]int{"read": 200, "write": 200, "admin": 200}},
		{"PATCH", "/api/v1/whoami", "", map[string]int{"read": 403, "write": 200, "admin": 200}},
		{"POST", "/api/v1/whoami", "", map[string]int{"read": 403, "write": 200, "admin": 200}},
		{"DELETE", "/api/v1/whoami", "", map[string]int{"read": 403, "write": 403, "admin": 200}},
	}
	for _, tc := range tests {
		for _, tok := range []string{"read", "write", "admin"} {
			want := tc.status[tok]
			r := e.do(tc.method, tc.path, tc.body, bearer(tok)...)
			if want == http.StatusForbidden {
				p := problemOf(t, r, want)
				if p.Code != CodeForbidden || !strings.Contains(p.Detail, "scope") {
					t.Errorf("%s %s with %s: %+v", tc.method, tc.path, tok, p)
				}
				if r.header.Get("WWW-Authenticate") != "" {
					t.Errorf("%s %s with %s: a 403 carries a challenge", tc.method, tc.path, tok)
				}
				continue
			}
			if r.status != want {
				t.Errorf("%s %s with %s: status %d, want %d: %s", tc.method, tc.path, tok, r.status, want, r.body)
			}
		}
	}

	// DELETE of a job needs admin; the write token that created it may
	// not delete it.
	created := decodeJob(t, e.do("POST", "/api/v1/jobs", job, bearer("write")...))
	path := fmt.Sprintf("/api/v1/jobs/%d", created.ID)
	e.waitStateAs("read", path, queue.StateCompleted)
	problemOf(t, e.do("DELETE", path, "", bearer("read")...), http.StatusForbidden)
	problemOf(t, e.do("DELETE", path, "", bearer("write")...), http.StatusForbidden)
	if r := e.do("DELETE", path, "", bearer("admin")...); r.status != http.StatusOK {
		t.Fatalf("admin delete: %d %s", r.status, r.body)
	}
	problemOf(t, e.do("GET", path, "", bearer("read")...), http.StatusNotFound)
}

// waitStateAs polls the job at path with token until it is in state.
func (e *env) waitStateAs(token, path string, state queue.JobState) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j := decodeJob(e.t, e.do("GET", path, "", bearer(token)...))
		if j.State == state {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job is %s, want %s", j.State, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAuthPrincipalReachesHandler(t *testing.T) {
	t.Parallel()
	e, _ := newAuthEnv(t)
	r := e.do("GET", "/api/v1/whoami", "", bearer("write")...)
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if got["ok"] != true || got["token"] != "bbbbbbbbbbbb" || got["name"] != "writer" || got["scope"] != "write" {
		t.Errorf("principal in handler: %v", got)
	}
}

func TestAuthenticatorFailureIs500(t *testing.T) {
	t.Parallel()
	e, _ := newAuthEnv(t)
	r := e.do("GET", "/api/v1/jobs", "", append(bearer("explode"), RequestIDHeader, "auth-boom")...)
	p := problemOf(t, r, http.StatusInternalServerError)
	if p.Code != CodeInternal {
		t.Errorf("code %s", p.Code)
	}
	if body := string(r.body); strings.Contains(body, "hunter2") || strings.Contains(body, "10.1.2.3") || strings.Contains(body, "password") {
		t.Errorf("the 500 leaks the cause: %s", body)
	}
	if r.header.Get("WWW-Authenticate") != "" {
		t.Error("a server failure asks the client to authenticate")
	}
	if logs := e.logs.String(); !strings.Contains(logs, "hunter2") || !strings.Contains(logs, `"request_id":"auth-boom"`) {
		t.Errorf("the cause is not logged with the request id:\n%s", logs)
	}
}

func TestAuthPublicRoutes(t *testing.T) {
	t.Parallel()
	e, auth := newAuthEnv(t)
	if r := e.do("GET", "/healthz", ""); r.status != http.StatusNoContent {
		t.Errorf("health check without a token: %d %s", r.status, r.body)
	}
	// A bad token on a public route is ignored, not refused.
	if r := e.do("GET", "/healthz", "", bearer("explode")...); r.status != http.StatusNoContent {
		t.Errorf("health check with a bad token: %d %s", r.status, r.body)
	}
	if got := auth.asked(); len(got) != 0 {
		t.Errorf("a public route consulted the authenticator: %q", got)
	}
}
