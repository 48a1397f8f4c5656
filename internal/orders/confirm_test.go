package orders

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/queue"
)

// work runs the registered order.confirm handler once on a job for
// orderID, as a worker would.
func (e *env) work(args string) error {
	e.t.Helper()
	w := queue.NewWorkers()
	RegisterKinds(w, e.db)
	kc, ok := w.Kind(KindConfirm)
	if !ok {
		e.t.Fatalf("%s is not registered", KindConfirm)
	}
	return kc.Handler.Work(context.Background(), &queue.Job{ID: 1, Kind: KindConfirm, Args: json.RawMessage(args)})
}

func TestConfirmIsIdempotent(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		userID := e.user("ada@example.com")
		o := e.create(`{"user_id":` + itoa(userID) + `,"amount_cents":1,"currency":"EUR"}`)
		args := `{"order_id":` + itoa(o.ID) + `}`

		if err := e.work(args); err != nil {
			t.Fatal(err)
		}
		first := e.get(o.ID)
		if first.Status != "confirmed" || first.ConfirmedAt == "" {
			t.Fatalf("after the first run: %+v", first)
		}
		// At-least-once delivery: a second run succeeds and changes
		// nothing.
		if err := e.work(args); err != nil {
			t.Fatalf("second run: %v", err)
		}
		if again := e.get(o.ID); again != first {
			t.Errorf("second run changed the order: %+v, was %+v", again, first)
		}
	})
}

func TestConfirmLeavesCancelledOrders(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		userID := e.user("ada@example.com")
		o := e.create(`{"user_id":` + itoa(userID) + `,"amount_cents":1,"currency":"EUR"}`)
		cancelled := decodeOrder(t, e.Do("PATCH", "/api/v1/orders/"+itoa(o.ID), `{"status":"cancelled"}`), http.StatusOK)
		if err := e.work(`{"order_id":` + itoa(o.ID) + `}`); err != nil {
			t.Fatalf("confirming a cancelled order: %v", err)
		}
		if got := e.get(o.ID); got != cancelled {
			t.Errorf("confirm changed a cancelled order: %+v, was %+v", got, cancelled)
		}
	})
}

func TestConfirmFailures(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		err := e.work(`{"order_id":424242}`)
		if err == nil || !queue.IsPermanent(err) || !errors.Is(err, ErrNotFound) {
			t.Errorf("missing order: %v (permanent %v)", err, queue.IsPermanent(err))
		}
		for _, args := range []string{`{}`, `{"order_id":0}`, `{"order_id":-1}`, `{"order_id":"1"}`, `{"order_id":1,"x":1}`, `[]`} {
			if err := e.work(args); err == nil || !queue.IsPermanent(err) {
				t.Errorf("args %s: %v, want a permanent error", args, err)
			}
		}
		// Clients that know the kind refuse such args at insert time.
		if err := e.client.ValidateInsert(queue.InsertParams{Kind: KindConfirm, Args: json.RawMessage(`{"order_id":0}`)}); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("ValidateInsert: %v", err)
		}
	})
}

// TestConfirmConcurrently runs many confirmations of one order at once:
// exactly one changes it, and all succeed.
func TestConfirmConcurrently(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		userID := e.user("ada@example.com")
		o := e.create(`{"user_id":` + itoa(userID) + `,"amount_cents":1,"currency":"EUR"}`)
		s := newStore(e.db)
		var wg sync.WaitGroup
		var mu sync.Mutex
		changed := 0
		for range 8 {
			wg.Go(func() {
				c, st, err := s.confirm(context.Background(), o.ID, e.clock.Now())
				mu.Lock()
				defer mu.Unlock()
				if err != nil || st != StatusConfirmed {
					t.Errorf("confirm: %v %v", st, err)
				}
				if c {
					changed++
				}
			})
		}
		wg.Wait()
		if changed != 1 {
			t.Errorf("%d confirmations changed the order, want 1", changed)
		}
	})
}
