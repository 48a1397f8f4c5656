package pgdriver

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Watch timing: how long a LISTEN connection may be silent before it is
// pinged (so a connection to a vanished server is noticed), and the
// reconnection backoff.
const (
	watchPingAfter  = 30 * time.Second
	watchPingTime   = 5 * time.Second
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// Watch listens for the driver's notifications on a connection of its own
// (not one of the pool's) and calls notify with the queue each names,
// until ctx is done; it then returns nil. When the connection fails it
// logs once and reconnects with backoff (the engine's poll covers the
// gap). Each time it starts listening it calls notify(""), since jobs
// inserted before then were announced to nobody. With Options.PollOnly it
// returns nil at once.
func (d *Driver) Watch(ctx context.Context, notify func(queue string)) error {
	if d.opts.PollOnly {
		return nil
	}
	backoff := watchBackoffMin
	failing := false
	for {
		conn, err := d.listen(ctx)
		if err == nil {
			if failing {
				d.log.Info("postgres: listening for job notifications again", "server", d.addr)
				failing = false
			}
			backoff = watchBackoffMin
			// Jobs inserted before LISTEN took effect announced
			// themselves to nobody.
			notify("")
			err = d.receive(ctx, conn, notify)
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(closeCtx)
			cancel()
		}
		if ctx.Err() != nil {
			return nil
		}
		if !failing {
			d.log.Warn("postgres: lost the connection listening for job notifications; reconnecting, workers poll meanwhile",
				"server", d.addr, "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, watchBackoffMax)
	}
}

// listen opens a connection with the pool's settings and LISTENs on it.
func (d *Driver) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, d.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, d.explain("listen", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{d.channel}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, d.explain("listen", err)
	}
	return conn, nil
}

// receive passes notifications to notify until ctx is done or the
// connection fails. A silent connection is pinged every watchPingAfter.
func (d *Driver) receive(ctx context.Context, conn *pgx.Conn, notify func(string)) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, watchPingAfter)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed() {
				return err
			}
			pctx, cancel := context.WithTimeout(ctx, watchPingTime)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		}
		notify(n.Payload)
	}
}
