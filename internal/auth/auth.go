// Package auth is what an API token grants: the ordered scopes and the
// principal a request acts as. Package tokens issues and checks tokens
// in these terms, and package httpapi enforces them on routes; neither
// needs the other.
package auth

import (
	"errors"
	"fmt"
)

// Scope is what an API token may do. Scopes are ordered: a token with a
// scope may do everything a lower scope may.
type Scope int

// The scopes.
const (
	// ScopePublic routes need no token (health checks).
	ScopePublic Scope = iota
	// ScopeRead may read.
	ScopeRead
	// ScopeWrite may also create, update and act on jobs.
	ScopeWrite
	// ScopeAdmin may also delete and control queues.
	ScopeAdmin
)

// String returns the scope's name as tokens and the CLI spell it.
func (s Scope) String() string {
	switch s {
	case ScopePublic:
		return "public"
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	case ScopeAdmin:
		return "admin"
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// ParseScope parses "read", "write" or "admin".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "read":
		return ScopeRead, nil
	case "write":
		return ScopeWrite, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return 0, fmt.Errorf("unknown scope %q (want read, write or admin)", s)
}

// Principal is who a request's token belongs to.
type Principal struct {
	// TokenID identifies the token (never the secret).
	TokenID string
	// Name is the token's human label.
	Name  string
	Scope Scope
}

// ErrUnauthenticated is returned (wrapped) for a token that is unknown,
// malformed, revoked or expired; the client gets a 401.
var ErrUnauthenticated = errors.New("invalid API token")
