// Package loop holds the ticker loop of the engine's background
// components and drivers.
package loop

import (
	"context"
	"time"
)

// Every calls fn every interval, and also at once whenever wake receives
// (a nil wake never does), until ctx ends. The first call is after
// interval or the first wake-up, whichever comes first; a wake-up that
// arrives while fn runs makes it run again when it returns.
func Every(ctx context.Context, interval time.Duration, wake <-chan struct{}, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		fn()
	}
}
