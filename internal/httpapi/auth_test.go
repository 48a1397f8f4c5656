package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/testutil"
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
	e := newEnvWith(t, func(c *Config) { c.Auth, c.Modules = auth, []Module{whoami{}} }, func(a *API) {
		a.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}))
	})
	return e, auth
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// unauthorized checks a 401: problem+json with the Bearer challenge.
func unauthorized(t *testing.T, r testutil.Response) testutil.Problem {
	t.Helper()
	p := testutil.ProblemOf(t, r, http.StatusUnauthorized)
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="kiln"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	if p.Code != string(CodeUnauthorized) {
		t.Errorf("code %s", p.Code)
	}
	return p
}

func TestAuthMissingOrMalformedHeader(t *testing.T) {
	t.Parallel()
	e, auth := newAuthEnv(t)
	p := unauthorized(t, e.Do("GET", "/api/v1/jobs", ""))
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
		r := e.Do("GET", "/api/v1/jobs", "", "Authorization", hdr)
		unauthorized(t, r)
		if strings.Contains(string(r.Body), "YWRtaW46") {
			t.Errorf("%q: the 401 echoes the credentials: %s", hdr, r.Body)
		}
	}
	if got := auth.asked(); len(got) != 0 {
		t.Errorf("malformed headers reached the authenticator: %q", got)
	}
	// The scheme is case-insensitive and surrounding blanks are ignored.
	for _, hdr := range []string{"bearer read", "BEARER read", "Bearer  read "} {
		if r := e.Do("GET", "/api/v1/jobs", "", "Authorization", hdr); r.Status != http.StatusOK {
			t.Errorf("%q: status %d: %s", hdr, r.Status, r.Body)
		}
	}
}

func TestAuthInvalidToken(t *testing.T) {
	t.Parallel()
	e, _ := newAuthEnv(t)
	r := e.Do("GET", "/api/v1/jobs", "", bearer("kiln_000000000000_nope")...)
	p := unauthorized(t, r)
	if !strings.Contains(p.Detail, "invalid, revoked or expired") {
		t.Errorf("detail %q", p.Detail)
	}
	if strings.Contains(string(r.Body), "kiln_0000") {
		t.Errorf("the 401 echoes the token: %s", r.Body)
	}
	// Authentication belongs to routes: an unknown path is a 404
	// whatever the token.
	testutil.ProblemOf(t, e.Do("GET", "/api/v1/nope", "", bearer("bad")...), http.StatusNotFound)
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
			r := e.Do(tc.method, tc.path, tc.body, bearer(tok)...)
			if want == http.StatusForbidden {
				p := testutil.ProblemOf(t, r, want)
				if p.Code != string(CodeForbidden) || !strings.Contains(p.Detail, "scope") {
					t.Errorf("%s %s with %s: %+v", tc.method, tc.path, tok, p)
				}
				if r.Header.Get("WWW-Authenticate") != "" {
					t.Errorf("%s %s with %s: a 403 carries a challenge", tc.method, tc.path, tok)
				}
				continue
			}
			if r.Status != want {
				t.Errorf("%s %s with %s: status %d, want %d: %s", tc.method, tc.path, tok, r.Status, want, r.Body)
			}
		}
	}

	// DELETE of a job needs admin; the write token that created it may
	// not delete it.
	created := decodeJob(t, e.Do("POST", "/api/v1/jobs", job, bearer("write")...))
	path := fmt.Sprintf("/api/v1/jobs/%d", created.ID)
	e.waitStateAs("read", path, queue.StateCompleted)
	testutil.ProblemOf(t, e.Do("DELETE", path, "", bearer("read")...), http.StatusForbidden)
	testutil.ProblemOf(t, e.Do("DELETE", path, "", bearer("write")...), http.StatusForbidden)
	if r := e.Do("DELETE", path, "", bearer("admin")...); r.Status != http.StatusOK {
		t.Fatalf("admin delete: %d %s", r.Status, r.Body)
	}
	testutil.ProblemOf(t, e.Do("GET", path, "", bearer("read")...), http.StatusNotFound)
}

// waitStateAs polls the job at path with token until it is in state.
func (e *env) waitStateAs(token, path string, state queue.JobState) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j := decodeJob(e.t, e.Do("GET", path, "", bearer(token)...))
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
	r := e.Do("GET", "/api/v1/whoami", "", bearer("write")...)
	var got map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil || r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if got["ok"] != true || got["token"] != "bbbbbbbbbbbb" || got["name"] != "writer" || got["scope"] != "write" {
		t.Errorf("principal in handler: %v", got)
	}
}

func TestAuthenticatorFailureIs500(t *testing.T) {
	t.Parallel()
	e, _ := newAuthEnv(t)
	r := e.Do("GET", "/api/v1/jobs", "", append(bearer("explode"), RequestIDHeader, "auth-boom")...)
	p := testutil.ProblemOf(t, r, http.StatusInternalServerError)
	if p.Code != string(CodeInternal) {
		t.Errorf("code %s", p.Code)
	}
	if body := string(r.Body); strings.Contains(body, "hunter2") || strings.Contains(body, "10.1.2.3") || strings.Contains(body, "password") {
		t.Errorf("the 500 leaks the cause: %s", body)
	}
	if r.Header.Get("WWW-Authenticate") != "" {
		t.Error("a server failure asks the client to authenticate")
	}
	if logs := e.logs.String(); !strings.Contains(logs, "hunter2") || !strings.Contains(logs, `"request_id":"auth-boom"`) {
		t.Errorf("the cause is not logged with the request id:\n%s", logs)
	}
}

func TestAuthPublicRoutes(t *testing.T) {
	t.Parallel()
	e, auth := newAuthEnv(t)
	if r := e.Do("GET", "/healthz", ""); r.Status != http.StatusNoContent {
		t.Errorf("health check without a token: %d %s", r.Status, r.Body)
	}
	// A bad token on a public route is ignored, not refused.
	if r := e.Do("GET", "/healthz", "", bearer("explode")...); r.Status != http.StatusNoContent {
		t.Errorf("health check with a bad token: %d %s", r.Status, r.Body)
	}
	if got := auth.asked(); len(got) != 0 {
		t.Errorf("a public route consulted the authenticator: %q", got)
	}
}
