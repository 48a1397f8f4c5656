package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnhq/kiln/queue"
)

// jobBuckets span a no-op job (1 ms) to an hour-long one; waits use the
// same range, from a job claimed at once to a backlog of an hour.
var jobBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}

// jobEvents are the event kinds whose counters exist, at zero, as soon as
// a queue and kind are first seen, so that rates and alerts work from the
// first occurrence.
var jobEvents = []queue.EventKind{
	queue.EventInserted, queue.EventStarted, queue.EventCompleted,
	queue.EventRetried, queue.EventFailed, queue.EventCancelled,
	queue.EventSnoozed, queue.EventRescued, queue.EventHandedBack,
}

type jobKey struct {
	queue, kind string
	event       queue.EventKind
}

// jobSeries are the children one event of one queue and kind updates.
type jobSeries struct {
	count prometheus.Counter
	// run is set for the outcomes of an attempt, wait for started.
	run  prometheus.Observer
	wait prometheus.Observer
}

func (m *Metrics) initJobs() {
	m.jobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "jobs_total",
		Help: "Job transitions by queue, kind and event: inserted, started, completed, retried (an attempt failed, another is due), " +
			"failed (finally), cancelled, snoozed, rescued (lease expired, returned by the rescuer) and handed_back (returned at shutdown).",
	}, []string{"queue", "kind", "event"})
	m.jobRun = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "job_run_duration_seconds",
		Help:      "How long attempts ran, by queue, kind and outcome (completed, retried, failed, cancelled, snoozed, handed_back).",
		Buckets:   jobBuckets,
	}, []string{"queue", "kind", "outcome"})
	m.jobWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "job_wait_duration_seconds",
		Help:      "How long jobs waited from becoming available (their run_at) to the start of an attempt, by queue and kind.",
		Buckets:   jobBuckets,
	}, []string{"queue", "kind"})
	m.jobCache.make = m.newJobSeries
}

func (m *Metrics) newJobSeries(key jobKey) *jobSeries {
	k := jobKey{queue: labelValue(key.queue), kind: labelValue(key.kind), event: queue.EventKind(labelValue(string(key.event)))}
	for _, ev := range jobEvents {
		m.jobs.WithLabelValues(k.queue, k.kind, string(ev))
	}
	s := &jobSeries{count: m.jobs.WithLabelValues(k.queue, k.kind, string(k.event))}
	switch k.event {
	case queue.EventStarted:
		s.wait = m.jobWait.WithLabelValues(k.queue, k.kind)
	case queue.EventCompleted, queue.EventRetried, queue.EventFailed,
		queue.EventCancelled, queue.EventSnoozed, queue.EventHandedBack:
		s.run = m.jobRun.WithLabelValues(k.queue, k.kind, string(k.event))
	}
	return s
}

// ObserveJobEvent records one job transition; pass it to
// (*queue.Client).Subscribe. It counts the event, records the wait of
// started events and the run time of an attempt's outcome (a job
// cancelled while not running has no run time, nor does a rescued one).
// It runs on the engine's hot path: after the first event of a queue,
// kind and event it neither locks nor allocates.
func (m *Metrics) ObserveJobEvent(e queue.Event) {
	if e.Job == nil {
		return
	}
	s := m.jobCache.get(jobKey{queue: e.Job.Queue, kind: e.Job.Kind, event: e.Kind})
	s.count.Inc()
	switch {
	case s.wait != nil:
		s.wait.Observe(e.Wait.Seconds())
	case s.run != nil && (e.RunTime > 0 || e.Kind != queue.EventCancelled):
		s.run.Observe(e.RunTime.Seconds())
	}
}
