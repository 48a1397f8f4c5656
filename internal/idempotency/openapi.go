package idempotency

import (
	"net/http"

	"github.com/kilnhq/kiln/internal/httpapi"
)

var _ httpapi.RouteMiddleware = (*Store)(nil)

// Responses maps the statuses [Store.Middleware] answers with itself, in
// place of the handler it wraps, to when; the API lists them on every
// operation the middleware wraps. A body over the route's limit (413) and
// an internal error (500) are the API's own answers on every route.
func (s *Store) Responses() map[int]string {
	return map[int]string{
		http.StatusBadRequest:          "The " + Header + " header is malformed (the problem's errors name it).",
		http.StatusConflict:            "A request with the same " + Header + " is still in progress; retry after Retry-After seconds.",
		http.StatusUnprocessableEntity: "The " + Header + " was already used for a different request.",
		http.StatusServiceUnavailable:  "The " + Header + " could not be checked in time; retry with the same key.",
	}
}
