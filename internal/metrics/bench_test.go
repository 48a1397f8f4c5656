package metrics

import (
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

func BenchmarkRequestDone(b *testing.B) {
	m := New(Options{})
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.RequestStarted()
			m.RequestDone("GET", "GET /api/v1/users/{id}", 200, 1500*time.Microsecond)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.RequestStarted()
				m.RequestDone("GET", "GET /api/v1/users/{id}", 200, 1500*time.Microsecond)
			}
		})
	})
}

func BenchmarkObserveJobEvent(b *testing.B) {
	m := New(Options{})
	job := &queue.Job{Queue: "default", Kind: "noop"}
	events := []queue.Event{
		{Kind: queue.EventInserted, Job: job},
		{Kind: queue.EventStarted, Job: job, Wait: 3 * time.Millisecond},
		{Kind: queue.EventCompleted, Job: job, RunTime: 200 * time.Microsecond},
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			m.ObserveJobEvent(events[i%len(events)])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				m.ObserveJobEvent(events[i%len(events)])
				i++
			}
		})
	})
}
