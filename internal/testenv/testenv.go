// Package testenv holds what kiln's tests share about the machine they
// run on.
package testenv

import (
	"os"
	"testing"
)

// CI reports whether the tests run in continuous integration
// (CI=true), where every tool the tests use is installed.
func CI() bool { return os.Getenv("CI") == "true" }

// SkipUnlessCI skips t with the message, except in continuous
// integration, where a missing tool is a broken machine and fails t: a
// run that skips what it could run proves less than it claims.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true, but: "+format, args...)
	}
	t.Skipf(format, args...)
}
