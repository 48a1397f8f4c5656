// Package stats assembles queue.QueueStats from the per-queue, per-state
// counts a driver reads, so that every driver reports them the same way.
package stats

import (
	"sort"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// Builder collects counts. The zero value is ready to use.
type Builder struct {
	by map[string]*queue.QueueStats
}

func (b *Builder) get(name string) *queue.QueueStats {
	if b.by == nil {
		b.by = map[string]*queue.QueueStats{}
	}
	s, ok := b.by[name]
	if !ok {
		s = &queue.QueueStats{Name: name, Counts: make(map[queue.JobState]int64, len(queue.AllStates))}
		for _, st := range queue.AllStates {
			s.Counts[st] = 0
		}
		b.by[name] = s
	}
	return s
}

// Add records n jobs of queue in state; minRunAt is the earliest RunAt
// among them, kept as the queue's oldest available job.
func (b *Builder) Add(queueName, state string, n int64, minRunAt time.Time) {
	s := b.get(queueName)
	s.Counts[queue.JobState(state)] = n
	if state == string(queue.StateAvailable) {
		t := minRunAt.UTC()
		s.OldestAvailable = &t
	}
}

// Paused marks queues as paused, listing them even without jobs.
func (b *Builder) Paused(names []string) {
	for _, n := range names {
		b.get(n).Paused = true
	}
}

// Result returns the queues sorted by name.
func (b *Builder) Result() []queue.QueueStats {
	out := make([]queue.QueueStats, 0, len(b.by))
	for _, s := range b.by {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
