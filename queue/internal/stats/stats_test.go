package stats

import (
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

func TestBuilder(t *testing.T) {
	var b Builder
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	b.Add("mail", "available", 3, t0)
	b.Add("mail", "completed", 7, t0.Add(-time.Hour))
	b.Add("default", "running", 1, t0)
	b.Paused([]string{"idle", "mail"})
	got := b.Result()
	if len(got) != 3 || got[0].Name != "default" || got[1].Name != "idle" || got[2].Name != "mail" {
		t.Fatalf("queues %+v, want default, idle, mail", got)
	}
	mail := got[2]
	if !mail.Paused || mail.Counts[queue.StateAvailable] != 3 || mail.Counts[queue.StateCompleted] != 7 || mail.Counts[queue.StateFailed] != 0 {
		t.Errorf("mail = %+v", mail)
	}
	if mail.OldestAvailable == nil || !mail.OldestAvailable.Equal(t0) || mail.OldestAvailable.Location() != time.UTC {
		t.Errorf("mail oldest available = %v, want %v in UTC", mail.OldestAvailable, t0)
	}
	if got[0].Paused || got[0].OldestAvailable != nil || len(got[0].Counts) != len(queue.AllStates) {
		t.Errorf("default = %+v, want every state counted, not paused, no available job", got[0])
	}
	if !got[1].Paused || got[1].Counts[queue.StateAvailable] != 0 {
		t.Errorf("idle = %+v, want paused with no jobs", got[1])
	}
}
