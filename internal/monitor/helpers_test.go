package monitor

import (
	"sync"
	"time"

	"github.com/kilnhq/kiln/internal/testutil"
)

// newClock returns a settable clock.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
}

// frMu serialises the tests that start a flight recorder: the runtime
// allows one per process.
var frMu sync.Mutex
