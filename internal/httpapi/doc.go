// Package httpapi is kiln's HTTP API: the router, the middleware every
// request passes through, RFC 9457 problem+json errors (WriteError, the
// one place an error becomes a status), strict JSON decoding, the
// OpenAPI document, the jobs and queues endpoints, and a CPU-bound
// compute endpoint that runs on a bounded pool.
//
// It is also the foundation the features build their routes on: the
// rules every list reads its query by ([ParseList]) and the page it
// answers with ([List]), path ids ([PathID]), links to jobs ([JobPath]),
// and the handlers of the operations on one record ([Show], [Change],
// [Remove], [Create]). Services return [apperr] errors and know nothing
// of HTTP.
//
// Every route lives under /api/v1 and is registered in [API.routes], the
// one list that the OpenAPI document is checked against.
package httpapi
