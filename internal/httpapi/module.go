package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/auth"
)

// Scope is what an API token may do; see [auth.Scope].
type Scope = auth.Scope

// The scopes.
const (
	ScopePublic = auth.ScopePublic
	ScopeRead   = auth.ScopeRead
	ScopeWrite  = auth.ScopeWrite
	ScopeAdmin  = auth.ScopeAdmin
)

// ParseScope parses "read", "write" or "admin".
func ParseScope(s string) (Scope, error) { return auth.ParseScope(s) }

// DefaultScope is the scope a route needs unless it says otherwise: read
// for GET and HEAD, admin for DELETE, write for everything else.
func DefaultScope(method string) Scope {
	switch method {
	case http.MethodGet, http.MethodHead:
		return ScopeRead
	case http.MethodDelete:
		return ScopeAdmin
	}
	return ScopeWrite
}

// Route is one API route: a net/http pattern ("GET /api/v1/users/{id}"),
// its handler, and the scope it needs (zero means [DefaultScope] of the
// pattern's method; use [ScopePublic] only through [API.Handle]).
type Route struct {
	Pattern string
	Handler http.HandlerFunc
	Scope   Scope
	// BodyLimit caps this route's request bodies instead of the API's
	// Config.BodyLimit (uploads); zero means the API's.
	BodyLimit int64
	// ReadTimeout, if set, gives this route's request that long to
	// arrive from its start instead of the server's ReadTimeout, for
	// uploads that take longer on a slow link.
	ReadTimeout time.Duration
}

// Module is a feature that serves routes under [Prefix] and documents
// them. OpenAPI returns a JSON object with "paths" and optionally
// "components"; it is merged into the API's document, and a name defined
// twice is an error.
type Module interface {
	Routes() []Route
	OpenAPI() []byte
}

// Principal is who a request's token belongs to; see [auth.Principal].
type Principal = auth.Principal

// ErrUnauthenticated is returned (wrapped) by an [Authenticator] for a
// token that is unknown, malformed, revoked or expired; the client gets a
// 401. Any other error is a 500 or 503.
var ErrUnauthenticated = auth.ErrUnauthenticated

// Authenticator checks a bearer token.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// PrincipalFrom returns the authenticated caller of the request ctx
// belongs to; ok is false when the API runs without authentication.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	if st := stateOf(ctx); st != nil && st.hasPrincipal {
		return st.principal, true
	}
	return Principal{}, false
}

// withAuth enforces scope on h: a missing or invalid token is 401 with
// WWW-Authenticate, a valid token with too small a scope is 403.
func withAuth(auth Authenticator, scope Scope, h http.Handler) http.Handler {
	if auth == nil || scope == ScopePublic {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(hdr, " ")
		if hdr == "" {
			WriteError(w, r, Errorf(CodeUnauthorized, "this route needs an API token: send Authorization: Bearer <token> (create one with `kiln token create`)"))
			return
		}
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			WriteError(w, r, Errorf(CodeUnauthorized, "the Authorization header must be \"Bearer <token>\""))
			return
		}
		p, err := auth.Authenticate(r.Context(), token)
		if err != nil {
			if errors.Is(err, ErrUnauthenticated) {
				WriteError(w, r, &Error{Code: CodeUnauthorized, Message: "the API token is invalid, revoked or expired", Err: err})
				return
			}
			WriteError(w, r, fmt.Errorf("authenticate: %w", err))
			return
		}
		if p.Scope < scope {
			WriteError(w, r, Errorf(CodeForbidden, "this route needs a token with scope %s; this token has scope %s", scope, p.Scope))
			return
		}
		if st := stateOf(r.Context()); st != nil {
			st.principal, st.hasPrincipal = p, true
			st.logger.Store(nil) // rebuilt with the token on next use
		} else {
			st = &reqState{base: discardLogger, principal: p, hasPrincipal: true}
			r = r.WithContext(context.WithValue(r.Context(), keyState, st))
		}
		h.ServeHTTP(w, r)
	})
}

// mergeOpenAPI merges a module's fragment into doc (both JSON objects
// decoded to maps). Paths and component names must not be defined twice.
func mergeOpenAPI(doc map[string]any, fragment []byte) error {
	var frag map[string]any
	dec := json.NewDecoder(bytes.NewReader(fragment))
	dec.UseNumber()
	if err := dec.Decode(&frag); err != nil {
		return fmt.Errorf("decode OpenAPI fragment: %w", err)
	}
	for key, v := range frag {
		switch key {
		case "paths":
			if err := mergeNames(doc, "paths", v, "path"); err != nil {
				return err
			}
		case "components":
			comps, ok := v.(map[string]any)
			if !ok {
				return errors.New("OpenAPI fragment: components must be an object")
			}
			dst, _ := doc["components"].(map[string]any)
			if dst == nil {
				dst = map[string]any{}
				doc["components"] = dst
			}
			for kind, defs := range comps {
				if err := mergeNames(dst, kind, defs, kind); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("OpenAPI fragment: unexpected key %q (want paths, components)", key)
		}
	}
	return nil
}

func mergeNames(dst map[string]any, key string, src any, what string) error {
	in, ok := src.(map[string]any)
	if !ok {
		return fmt.Errorf("OpenAPI fragment: %s must be an object", key)
	}
	out, _ := dst[key].(map[string]any)
	if out == nil {
		out = map[string]any{}
		dst[key] = out
	}
	for name, v := range in {
		if _, dup := out[name]; dup {
			return fmt.Errorf("OpenAPI fragment: %s %q is defined twice", what, name)
		}
		out[name] = v
	}
	return nil
}

// RouteMiddleware wraps API routes and declares the answers it gives in
// place of the handlers it wraps, so that the OpenAPI document lists them
// on every operation it wraps.
type RouteMiddleware interface {
	// Middleware wraps one route's handler.
	Middleware(next http.Handler) http.Handler
	// Responses maps each status the middleware may answer with itself
	// (as a problem) to a one-sentence description of when.
	Responses() map[int]string
}

// Descriptions of the answers the API's own middleware gives in place of
// a route's handler.
const (
	descInternal    = "Internal error; details are logged with the request id."
	descUnavailable = "The service is unavailable."
)

// middlewareAnswers returns, by status, the responses the middleware
// around a route may give in place of its handler: 500 from panic
// recovery and 413 from the body limit on every route, 401, 403 (above
// read scope) and 503 (the token could not be checked in time) from
// authentication, and what the idempotency middleware declares on POST
// routes. The first layer to declare a status describes it.
func (a *API) middlewareAnswers(scope Scope, bodyLimit int64, idem bool) map[string]any {
	out := map[string]any{
		"500": problemResponse(descInternal),
		"413": problemResponse(fmt.Sprintf("The request body is over this operation's limit of %s.", byteSize(bodyLimit))),
	}
	if a.auth != nil {
		out["401"] = map[string]any{"$ref": "#/components/responses/Unauthorized"}
		if scope > ScopeRead {
			out["403"] = map[string]any{"$ref": "#/components/responses/Forbidden"}
		}
		out["503"] = problemResponse(descUnavailable)
	}
	if idem {
		for status, desc := range a.idem.Responses() {
			if k := strconv.Itoa(status); out[k] == nil {
				out[k] = problemResponse(desc)
			}
		}
	}
	return out
}

// problemResponse is an OpenAPI response with a problem body.
func problemResponse(description string) map[string]any {
	return map[string]any{
		"description": description,
		"headers":     map[string]any{RequestIDHeader: map[string]any{"$ref": "#/components/headers/RequestID"}},
		"content": map[string]any{
			"application/problem+json": map[string]any{
				"schema": map[string]any{"$ref": "#/components/schemas/Problem"},
			},
		},
	}
}

// byteSize formats n bytes for a description: whole MiB or KiB when it
// is one, else bytes.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// describeRoute records in the document what the API enforces on a
// route, so that fragments need not repeat it: the scope it needs
// (x-kiln-scope), the answers its middleware may give in place of its
// handler (see [API.middlewareAnswers]; an operation's own description of
// a status stands), and the Idempotency-Key parameter on POST routes when
// idempotency is on.
func describeRoute(doc map[string]any, method, path string, scope Scope, answers map[string]any, idem bool) {
	paths, _ := doc["paths"].(map[string]any)
	item, _ := paths[path].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	if op == nil {
		return // DocMismatches reports it
	}
	op["x-kiln-scope"] = scope.String()
	if resp, ok := op["responses"].(map[string]any); ok {
		for status, r := range answers {
			if _, own := resp[status]; !own {
				resp[status] = r
			}
		}
	}
	if method == http.MethodPost && idem {
		params, _ := op["parameters"].([]any)
		op["parameters"] = append(params, map[string]any{"$ref": "#/components/parameters/IdempotencyKey"})
	}
}
