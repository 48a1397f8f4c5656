package orders

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/enqueue"
	"github.com/kilnhq/kiln/queue"
)

// KindConfirm is the kind of the job that confirms a new order.
const KindConfirm = "order.confirm"

// ConfirmArgs are the arguments of a [KindConfirm] job.
type ConfirmArgs struct {
	OrderID int64 `json:"order_id"`
}

// Validate checks that OrderID can be an order's id.
func (a *ConfirmArgs) Validate() error { return enqueue.ID("order_id", a.OrderID) }

// RegisterKinds registers the order kinds on w, working on db:
//
//   - order.confirm {"order_id":N}: moves a pending order to confirmed
//     and sets its confirmed_at. It is safe to run more than once: an
//     order already confirmed, or cancelled, is left as it is and the job
//     succeeds; a missing order fails the job permanently.
func RegisterKinds(w *queue.Workers, db *database.DB) {
	s := newStore(db)
	w.Handle(KindConfirm, queue.Typed(func(ctx context.Context, job *queue.Job, a ConfirmArgs) error {
		return confirm(ctx, s, job, a, time.Now)
	}))
}

// confirm works one order.confirm job.
func confirm(ctx context.Context, s *store, job *queue.Job, a ConfirmArgs, now func() time.Time) error {
	changed, status, err := s.confirm(ctx, a.OrderID, database.StoredTime(now()))
	switch {
	case errors.Is(err, ErrNotFound):
		return queue.Permanent(fmt.Errorf("confirm: %w", err))
	case err != nil:
		return err
	case changed:
		return nil
	case status == StatusCancelled:
		job.Logger().Info("order was cancelled before it was confirmed; leaving it cancelled", "order_id", a.OrderID)
	}
	return nil
}
