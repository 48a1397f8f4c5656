package database

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// OnceKey is carried by the context of a request whose work must take
// effect at most once however often it is sent (a POST with an
// Idempotency-Key). [Once] records the work's outcome through it in the
// very transaction that does the work, so that a crash after the commit
// cannot lose the fact that the work was done: a later attempt of the
// same request finds the outcome and returns it instead of doing the
// work again.
type OnceKey interface {
	// Committed returns the outcome that an earlier attempt of the same
	// request committed, as JSON; ok is false when none did.
	Committed() (outcome []byte, ok bool)
	// Commit records outcome in tx, the transaction that does the
	// request's work. It fails when the request no longer holds its key
	// (a repeat took it over), and then tx must roll back.
	Commit(ctx context.Context, tx *sql.Tx, outcome []byte) error
}

type onceCtxKey struct{}

// WithOnce returns ctx carrying k, for [Once] to use.
func WithOnce(ctx context.Context, k OnceKey) context.Context {
	return context.WithValue(ctx, onceCtxKey{}, k)
}

// Keyed reports whether ctx carries an [OnceKey]: whether [Once] would
// record an outcome.
func Keyed(ctx context.Context) bool {
	k, _ := ctx.Value(onceCtxKey{}).(OnceKey)
	return k != nil
}

// Recorded returns the outcome that an earlier attempt of the request of
// ctx committed through [Once]; ok is false when there is none (ctx
// carries no key, or no attempt committed). A service calls it before work
// that happens outside the transaction (storing an upload) so as not to
// do that work again either.
func Recorded[T any](ctx context.Context) (out T, ok bool, err error) {
	k, _ := ctx.Value(onceCtxKey{}).(OnceKey)
	if k == nil {
		return out, false, nil
	}
	b, ok := k.Committed()
	if !ok {
		return out, false, nil
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, false, fmt.Errorf("decode the outcome an earlier attempt of this request committed: %w", err)
	}
	return out, true, nil
}

// Once runs fn in a transaction of db ([DB.InTx]) and returns what fn
// returns. When ctx carries an [OnceKey] (see [WithOnce]), the outcome
// is encoded as JSON and recorded in the same transaction, and when an
// earlier attempt of the request already committed its outcome, fn does
// not run: Once returns that outcome, decoded. T must survive a JSON round
// trip (exported fields only).
//
// A request commits its work once: when ctx carries a key, a second call
// of Once in the same request fails and its transaction rolls back.
func Once[T any](ctx context.Context, db *DB, fn func(tx *sql.Tx) (T, error)) (T, error) {
	k, _ := ctx.Value(onceCtxKey{}).(OnceKey)
	var out T
	if k != nil {
		if _, ok := k.Committed(); ok {
			v, _, err := Recorded[T](ctx)
			return v, err
		}
	}
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		v, err := fn(tx)
		if err != nil {
			return err
		}
		if k != nil {
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("encode the outcome of the request's work: %w", err)
			}
			if err := k.Commit(ctx, tx, b); err != nil {
				return err
			}
		}
		out = v
		return nil
	})
	return out, err
}
