package queue

import "fmt"

// JobState is the lifecycle state of a job. See the package documentation.
type JobState string

// The job states.
const (
	StateAvailable JobState = "available"
	StateScheduled JobState = "scheduled"
	StateRunning   JobState = "running"
	StateRetryable JobState = "retryable"
	StateCompleted JobState = "completed"
	StateFailed    JobState = "failed"
	StateCancelled JobState = "cancelled"
)

// AllStates lists every job state in lifecycle order.
var AllStates = []JobState{
	StateAvailable, StateScheduled, StateRunning, StateRetryable,
	StateCompleted, StateFailed, StateCancelled,
}

// Final reports whether s is a final state (completed, failed or cancelled).
func (s JobState) Final() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

// Valid reports whether s is one of the seven job states.
func (s JobState) Valid() bool {
	for _, v := range AllStates {
		if s == v {
			return true
		}
	}
	return false
}

// ParseState returns the JobState named by s, or an error naming the valid
// states.
func ParseState(s string) (JobState, error) {
	st := JobState(s)
	if !st.Valid() {
		return "", fmt.Errorf("unknown job state %q (want one of available, scheduled, running, retryable, completed, failed, cancelled)", s)
	}
	return st, nil
}
