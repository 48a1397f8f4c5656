package sqlitedriver_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/queuetest"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queue.Driver {
		d, err := sqlitedriver.Open(filepath.Join(t.TempDir(), "kiln.db"), sqlitedriver.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := d.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		if err := d.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		return d
	})
}
