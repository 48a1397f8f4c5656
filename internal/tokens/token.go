// Package tokens issues, lists, revokes and verifies kiln's API tokens.
//
// A token reads kiln_<id>_<secret>: id is 12 lower-case hex characters
// that name the token in listings and logs, and secret is 32 random bytes
// in unpadded base64url (which may itself contain '_'). The database keeps
// only the SHA-256 of the secret's bytes, so a copy of the database lets
// nobody call the API.
//
// [Service.Authenticate] checks the bearer token of every API request. To
// keep the database off that path it caches each token it has read (its
// hash, scope, expiry and revocation) for a short time, [DefaultCacheTTL]
// unless configured: a token revoked by any process stops working within
// that time everywhere, and at once in the process that revoked it. The
// secret is still compared in constant time on every request. Ids that do
// not exist are remembered in a separate, small cache, so a caller making
// up ids can neither grow memory nor push real tokens out. When a token
// was last used is written at most once a minute per token, off the
// request path.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kilnhq/kiln/internal/auth"
)

// The token format.
const (
	// Prefix starts every token, so that secret scanners and people can
	// tell what it is.
	Prefix = "kiln_"
	// IDLen is the length of a token id: 12 lower-case hex characters.
	IDLen = 12
	// SecretBytes is the number of random bytes in a token's secret.
	SecretBytes = 32
	// secretLen is the length of the encoded secret.
	secretLen = (SecretBytes*8 + 5) / 6
	// tokenLen is the length of a whole token.
	tokenLen = len(Prefix) + IDLen + 1 + secretLen
)

// MaxNameLen is the longest token name, in characters.
const MaxNameLen = 100

var (
	// ErrNotFound is returned for a token id that does not exist.
	ErrNotFound = errors.New("token not found")
	// ErrInvalid is returned (wrapped) when a token cannot be created as
	// asked: a bad name, scope or lifetime.
	ErrInvalid = errors.New("invalid token parameters")
)

// secretEncoding is unpadded base64url that accepts only the canonical
// encoding, so each secret has exactly one spelling.
var secretEncoding = base64.RawURLEncoding.Strict()

// Token describes an API token. It never holds the secret or its hash.
type Token struct {
	// ID names the token; it is public.
	ID string
	// Name is a human label.
	Name  string
	Scope auth.Scope
	// CreatedAt is when the token was created.
	CreatedAt time.Time
	// ExpiresAt is when the token stops working; zero means never.
	ExpiresAt time.Time
	// RevokedAt is when the token was revoked; zero means it was not.
	RevokedAt time.Time
	// LastUsedAt is when the token last authenticated a request, to
	// within a minute; zero means never.
	LastUsedAt time.Time
}

// Revoked reports whether the token was revoked.
func (t Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// Live reports whether the token still works at now: neither revoked nor
// expired.
func (t Token) Live(now time.Time) bool { return !t.Revoked() && !t.Expired(now) }

// State is "revoked", "expired" or "active" at now.
func (t Token) State(now time.Time) string {
	switch {
	case t.Revoked():
		return "revoked"
	case t.Expired(now):
		return "expired"
	}
	return "active"
}

// ValidID reports whether s has the form of a token id.
func ValidID(s string) bool {
	if len(s) != IDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Parse splits a token into its id and secret. ok is false unless token
// is exactly kiln_<12 lower-case hex>_<canonical base64url of 32 bytes>.
// The id is a substring of token; nothing is allocated.
func Parse(token string) (id string, secret [SecretBytes]byte, ok bool) {
	if len(token) != tokenLen || !strings.HasPrefix(token, Prefix) {
		return "", secret, false
	}
	id = token[len(Prefix) : len(Prefix)+IDLen]
	if !ValidID(id) || token[len(Prefix)+IDLen] != '_' {
		return "", secret, false
	}
	// Decoding between stack arrays keeps the request path free of
	// allocations.
	var src [secretLen]byte
	copy(src[:], token[len(Prefix)+IDLen+1:])
	var buf [SecretBytes + 3]byte
	n, err := secretEncoding.Decode(buf[:], src[:])
	if err != nil || n != SecretBytes {
		return "", secret, false
	}
	copy(secret[:], buf[:n])
	return id, secret, true
}

// format spells a token.
func format(id string, secret [SecretBytes]byte) string {
	return Prefix + id + "_" + secretEncoding.EncodeToString(secret[:])
}

// hashSecret is what the database keeps of a secret.
func hashSecret(secret [SecretBytes]byte) [sha256.Size]byte { return sha256.Sum256(secret[:]) }

// newID returns a random token id.
func newID() string {
	var b [IDLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// newSecret returns a random secret.
func newSecret() [SecretBytes]byte {
	var s [SecretBytes]byte
	_, _ = rand.Read(s[:])
	return s
}

// Validate checks the parameters of a new token: a name of at most
// [MaxNameLen] printable characters (it may be empty), a scope of read,
// write or admin, and a lifetime that is not negative (zero: the token
// never expires). Errors wrap [ErrInvalid].
func Validate(name string, scope auth.Scope, ttl time.Duration) error {
	var problems []string
	if !utf8.ValidString(name) {
		problems = append(problems, "name is not valid UTF-8")
	} else {
		if n := utf8.RuneCountInString(name); n > MaxNameLen {
			problems = append(problems, fmt.Sprintf("name has %d characters, at most %d are allowed", n, MaxNameLen))
		}
		if strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
			problems = append(problems, "name must not contain control or invisible characters")
		}
	}
	if scope < auth.ScopeRead || scope > auth.ScopeAdmin {
		problems = append(problems, fmt.Sprintf("scope %s: want read, write or admin", scope))
	}
	if ttl < 0 {
		problems = append(problems, fmt.Sprintf("lifetime %s is negative (0 means the token never expires)", ttl))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}
