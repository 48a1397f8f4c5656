// Package claim holds the engine's claim order, which every driver uses to
// hand claimed jobs to the engine in the order it promises.
package claim

import (
	"sort"

	"github.com/kilnhq/kiln/queue"
)

// Sort orders jobs as they are claimed: higher priority first, then
// earlier RunAt, then lower id. Drivers call it because RETURNING does
// not promise an order.
func Sort(jobs []*queue.Job) {
	sort.Slice(jobs, func(a, b int) bool {
		x, y := jobs[a], jobs[b]
		if x.Priority != y.Priority {
			return x.Priority > y.Priority
		}
		if !x.RunAt.Equal(y.RunAt) {
			return x.RunAt.Before(y.RunAt)
		}
		return x.ID < y.ID
	})
}
