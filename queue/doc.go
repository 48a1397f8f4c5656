// Package queue is kiln's durable job engine.
//
// A [Client] inserts jobs into a database through a [Driver] and, when it
// has registered [Workers] and configured queues, claims and works them.
// Any number of clients, in one process or many, may share one database.
//
// # States
//
// Every job is in exactly one [JobState]:
//
//   - available: ready to be claimed now.
//   - scheduled: waiting for its RunAt time (inserted with a delay, or snoozed).
//   - running: claimed by a worker that holds its lease.
//   - retryable: its last attempt failed; it runs again at RunAt.
//   - completed: its handler returned nil.
//   - failed: its attempts are exhausted or it returned a permanent error.
//   - cancelled: it was cancelled before or while it ran.
//
// Completed, failed and cancelled are final. Scheduled and retryable jobs are
// moved to available by the leader once their RunAt has passed.
//
// # Delivery
//
// Delivery is at-least-once. A claimed job carries a lease that the worker's
// client extends by heartbeat while the handler runs. If the process dies,
// the lease expires and the leader's rescuer returns the job to retryable (or
// failed, when no attempts are left), so it runs again elsewhere. Handlers
// must therefore be idempotent.
//
// Every write a worker makes about its job (outcome, progress, lease
// extension) is fenced by the job's id, its attempt number and the lease
// token of the claim: a worker whose lease was rescued can never overwrite
// the outcome of a newer attempt.
//
// # Retries
//
// A handler that returns an error is retried according to its
// [RetryPolicy]: the job's own policy if it was inserted with one, else the
// kind's, else [DefaultRetryPolicy]. Wrap an error with [Permanent] to fail
// the job at once, return [Snooze] to run it again later without using an
// attempt, or [Cancel] to cancel it.
//
// # Shutdown
//
// [Client.Stop] stops claiming, lets running jobs finish until its context
// is done, then cancels the handlers' contexts and hands their jobs back to
// available at once, without using an attempt, so another worker can take
// them without waiting for a lease to expire.
//
// # Your transaction
//
// [Client.InsertTx], [Client.RetryTx] and [Client.CancelTx] work inside
// the caller's transaction on the driver's database (a *sql.Tx from the
// driver's DB(), or a pgx.Tx on pgdriver's Pool()), so that a domain
// write and the job it inserts, retries or cancels commit together or not
// at all. The client cannot see that commit: workers learn of such jobs by
// polling or by the driver's change watcher rather than at once, a
// cancelled running job's context is cancelled within the
// CancelCheckInterval of the process running it, and no events are
// emitted for these changes.
package queue
