package httpapi

import (
	"context"
	"net/http"
)

// The handlers below serve the operations every feature has on a record
// named by the path parameter id, so that a feature says only what is
// its own: which service call, and how its result looks to a client.

// Show returns the handler of GET .../{id}: it calls get with the id and
// answers 200 with view of the record.
func Show[T, V any](get func(ctx context.Context, id int64) (T, error), view func(T) V) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := PathID(r, "id")
		var v T
		if err == nil {
			v, err = get(r.Context(), id)
		}
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, r, http.StatusOK, view(v))
	}
}

// Change returns the handler of PATCH .../{id}: it reads the request
// body with decode, calls update with the id and what decode returned,
// and answers 200 with view of the record.
func Change[In, T, V any](decode func(*http.Request) (In, error), update func(ctx context.Context, id int64, in In) (T, error), view func(T) V) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := PathID(r, "id")
		var in In
		if err == nil {
			in, err = decode(r)
		}
		var v T
		if err == nil {
			v, err = update(r.Context(), id, in)
		}
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, r, http.StatusOK, view(v))
	}
}

// Remove returns the handler of DELETE .../{id}: it calls del with the
// id and answers 204.
func Remove(del func(ctx context.Context, id int64) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := PathID(r, "id")
		if err == nil {
			err = del(r.Context(), id)
		}
		if err != nil {
			WriteError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// Create returns the handler of a POST that makes a record at once: it
// reads the request body with decode, calls create with what decode
// returned, and answers 201 with view of the record and Location: its
// path.
func Create[In, T, V any](decode func(*http.Request) (In, error), create func(ctx context.Context, in In) (T, error), view func(T) V, path func(T) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		in, err := decode(r)
		var v T
		if err == nil {
			v, err = create(r.Context(), in)
		}
		if err != nil {
			WriteError(w, r, err)
			return
		}
		w.Header().Set("Location", path(v))
		WriteJSON(w, r, http.StatusCreated, view(v))
	}
}
