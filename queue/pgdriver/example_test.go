package pgdriver_test

import (
	"context"
	"log"

	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/pgdriver"
)

// Open a PostgreSQL database, migrate it, and insert a job in the same
// transaction as the application's own write.
func Example() {
	ctx := context.Background()
	d, err := pgdriver.Open(ctx, "postgres://kiln@db.internal:5432/app?sslmode=verify-full", pgdriver.Options{})
	if err != nil {
		log.Fatal(err) // e.g. "server db.internal:5432 is unreachable …"
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	c, err := queue.New(queue.Config{Driver: d, AllowUnknownKinds: true})
	if err != nil {
		log.Fatal(err)
	}
	tx, err := d.Pool().Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO orders (id, total) VALUES ($1, $2)`, 42, 1999); err != nil {
		log.Fatal(err)
	}
	if _, err := c.InsertTx(ctx, tx, queue.InsertParams{Kind: "order.confirm", Args: []byte(`{"order":42}`)}); err != nil {
		log.Fatal(err)
	}
	// The job exists, and workers are notified, only if this commits.
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
}
