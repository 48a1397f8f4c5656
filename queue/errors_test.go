package queue

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestErrorMarkers: IsSnooze, IsCancel, IsPermanent and RetryAfterDelay
// find their marker through wrapping and joins, and nothing else matches
// them, not even an error with the same text.
func TestErrorMarkers(t *testing.T) {
	t.Parallel()
	snooze := Snooze(time.Second)
	cancel := Cancel(nil)
	later := RetryAfter(errors.New("429"), 7*time.Second)
	for _, c := range []struct {
		err                  error
		snooze, cancel, perm bool
		after                time.Duration
		hasAfter             bool
	}{
		{err: snooze, snooze: true},
		{err: fmt.Errorf("later: %w", snooze), snooze: true},
		{err: errors.Join(errors.New("x"), fmt.Errorf("y: %w", cancel)), cancel: true},
		{err: cancel, cancel: true},
		{err: Permanent(errors.New("bad args")), perm: true},
		{err: errors.New("snoozed for 1s")},
		{err: later, after: 7 * time.Second, hasAfter: true},
		{err: fmt.Errorf("deliver: %w", later), after: 7 * time.Second, hasAfter: true},
		{err: RetryAfter(errors.New("x"), -time.Second), hasAfter: true},
		{err: nil},
	} {
		after, hasAfter := RetryAfterDelay(c.err)
		if IsSnooze(c.err) != c.snooze || IsCancel(c.err) != c.cancel || IsPermanent(c.err) != c.perm || after != c.after || hasAfter != c.hasAfter {
			t.Errorf("%v: snooze %v cancel %v permanent %v after %v,%v", c.err, IsSnooze(c.err), IsCancel(c.err), IsPermanent(c.err), after, hasAfter)
		}
	}
	if RetryAfter(nil, time.Second) != nil {
		t.Error("RetryAfter(nil) is not nil")
	}
	if got := later.Error(); got != "429" {
		t.Errorf("RetryAfter changed the message: %q", got)
	}
}
