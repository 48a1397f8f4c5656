// Package httpapi is kiln's HTTP API: the router, the middleware every
// request passes through, RFC 9457 problem+json errors, strict JSON
// decoding, the OpenAPI document, the jobs and queues endpoints, and a
// CPU-bound compute endpoint that runs on a bounded pool.
//
// Every route lives under /api/v1 and is registered in [API.routes], the
// one list that the OpenAPI document is checked against.
package httpapi
