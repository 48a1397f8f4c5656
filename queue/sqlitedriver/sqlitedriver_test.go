package sqlitedriver_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/queuetest"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queue.Driver {
		d, err := sqlitedriver.Open(filepath.Join(t.TempDir(), "kiln.db"), sqlitedriver.Options{})
		return queuetest.Migrated(t, d, err)
	})
}

// TestWatchKeepsReadsFlowing: the change watcher must not take a
// connection of the read pool for good. With ReadConns: 1 (or as many
// watching clients as read connections) every read would otherwise wait
// forever: Get, the cancellation check, the rescuer.
func TestWatchKeepsReadsFlowing(t *testing.T) {
	d, err := sqlitedriver.Open(filepath.Join(t.TempDir(), "kiln.db"), sqlitedriver.Options{ReadConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Watch(ctx, func(string) {}) }()
	time.Sleep(50 * time.Millisecond) // let Watch take its connection
	rctx, rcancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer rcancel()
	if _, err := d.PausedQueues(rctx); err != nil {
		t.Errorf("read while watching: %v", err)
	}
	if _, _, err := d.NextRunAt(rctx); err != nil {
		t.Errorf("read while watching: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watch: %v", err)
	}
}
