package claim

import (
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

func TestSort(t *testing.T) {
	t0 := time.Unix(100, 0)
	jobs := []*queue.Job{
		{ID: 1, Priority: 0, RunAt: t0},
		{ID: 2, Priority: 5, RunAt: t0.Add(time.Second)},
		{ID: 3, Priority: 0, RunAt: t0.Add(-time.Second)},
		{ID: 4, Priority: 5, RunAt: t0.Add(time.Second)},
		{ID: 5, Priority: -1, RunAt: t0.Add(-time.Hour)},
	}
	Sort(jobs)
	want := []int64{2, 4, 3, 1, 5}
	for i, j := range jobs {
		if j.ID != want[i] {
			t.Fatalf("order %v, want ids %v", ids(jobs), want)
		}
	}
}

func ids(jobs []*queue.Job) []int64 {
	out := make([]int64, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}
