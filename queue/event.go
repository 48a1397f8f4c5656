package queue

import (
	"sync"
	"time"
)

// EventKind names a job transition.
type EventKind string

// The events a client emits. Each is emitted after the transition is stored.
const (
	EventInserted   EventKind = "inserted"
	EventStarted    EventKind = "started"
	EventCompleted  EventKind = "completed"
	EventRetried    EventKind = "retried" // attempt failed, job is retryable
	EventFailed     EventKind = "failed"  // final failure
	EventCancelled  EventKind = "cancelled"
	EventSnoozed    EventKind = "snoozed"
	EventRescued    EventKind = "rescued"     // lease expired, job returned by the rescuer
	EventHandedBack EventKind = "handed_back" // returned to available at shutdown
)

// Event describes one transition of one job.
type Event struct {
	Kind EventKind
	// Job is a snapshot taken at the transition; do not modify it.
	Job *Job
	// Err is the attempt's error for retried, failed, cancelled and
	// rescued events.
	Err error
	// RunTime is how long the attempt ran (outcome events).
	RunTime time.Duration
	// Wait is how long the job waited between RunAt and its start
	// (started events).
	Wait time.Duration
	At   time.Time
}

// hooks is a set of synchronous event subscribers.
type hooks struct {
	mu   sync.RWMutex
	next int
	fns  map[int]func(Event)
}

func (h *hooks) add(fn func(Event)) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fns == nil {
		h.fns = map[int]func(Event){}
	}
	id := h.next
	h.next++
	h.fns[id] = fn
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.fns, id)
	}
}

func (h *hooks) emit(e Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, fn := range h.fns {
		fn(e)
	}
}

func (h *hooks) empty() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.fns) == 0
}
