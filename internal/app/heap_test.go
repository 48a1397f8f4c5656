//go:build !race

package app_test

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/app"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	kmetrics "github.com/kilnhq/kiln/internal/metrics"
	"github.com/kilnhq/kiln/internal/monitor"
	"github.com/kilnhq/kiln/queue"
)

// liveHeap collects garbage and returns the bytes of live heap objects.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestHeapSteadyOver100kJobs works 100,000 jobs through an engine set up
// as serve sets it up (built-in kinds, metrics and the slow-job log
// subscribed to every event) in ten rounds of 10,000, and checks that the
// live heap after the last round is not larger than after the second:
// nothing the engine keeps per job outlives the job.
func TestHeapSteadyOver100kJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("works 100,000 jobs")
	}
	e := dbtest.SQLite(t)
	w := queue.NewWorkers()
	if err := app.RegisterKinds(w, app.NewBase(e.DB, nil, nil, nil)); err != nil {
		t.Fatal(err)
	}
	var done atomic.Int64
	c := e.Client(t, queue.Config{Workers: w, Queues: map[string]queue.QueueConfig{"default": {MaxWorkers: 100}},
		Hooks: []func(queue.Event){func(ev queue.Event) {
			if ev.Kind == queue.EventCompleted {
				done.Add(1)
			}
		}}}, false)
	m := kmetrics.New(kmetrics.Options{})
	m.WatchQueues(c)
	c.Subscribe(m.ObserveJobEvent)
	c.Subscribe(monitor.NewSlowLog(monitor.SlowOptions{}).Job)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(context.Background())

	const rounds, perRound = 10, 10000
	params := make([]queue.InsertParams, perRound)
	for i := range params {
		params[i] = queue.InsertParams{Kind: "noop", Args: []byte(`{"n":1}`)}
	}
	var heaps []uint64
	for r := 1; r <= rounds; r++ {
		if _, err := c.InsertMany(ctx, params); err != nil {
			t.Fatal(err)
		}
		for done.Load() < int64(r*perRound) {
			if ctx.Err() != nil {
				t.Fatalf("round %d: %d of %d jobs done", r, done.Load(), r*perRound)
			}
			time.Sleep(10 * time.Millisecond)
		}
		heaps = append(heaps, liveHeap())
	}
	t.Logf("live heap after each 10,000 jobs (KiB): %v", kib(heaps))
	base, last := heaps[1], heaps[len(heaps)-1]
	// Allow 2 MiB of noise (pools, caches warming); a leak of even 100
	// bytes a job would show as 8 MB over the last 80,000 jobs.
	if last > base+2<<20 {
		t.Errorf("live heap grew from %d KiB after 20,000 jobs to %d KiB after 100,000", base>>10, last>>10)
	}
}

func kib(bs []uint64) []uint64 {
	out := make([]uint64, len(bs))
	for i, b := range bs {
		out[i] = b >> 10
	}
	return out
}
