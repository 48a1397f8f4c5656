package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/queue"
)

// Code classifies an [Error]; it is [apperr.Code], which services use.
// Each code maps to one HTTP status in codeStatus.
type Code = apperr.Code

// The error codes services share ([apperr]), and those only the HTTP
// layer gives.
const (
	CodeInvalid       = apperr.CodeInvalid       // malformed request: 400
	CodeValidation    = apperr.CodeValidation    // well-formed but unacceptable fields: 422
	CodeNotFound      = apperr.CodeNotFound      // 404
	CodeConflict      = apperr.CodeConflict      // wrong state for the operation: 409
	CodeTooLarge      = apperr.CodeTooLarge      // request body over the limit: 413
	CodeUnavailable   = apperr.CodeUnavailable   // shutting down or overloaded: 503
	CodeInternal      = apperr.CodeInternal      // a bug or an unexpected failure: 500
	CodeForbidden     = apperr.CodeForbidden     // the caller may not do this: 403
	CodeUnauthorized  = apperr.CodeUnauthorized  // no valid API token: 401
	CodeUnprocessable = apperr.CodeUnprocessable // a request that cannot be processed as sent (an Idempotency-Key reused with another body): 422

	CodeMethodNotAllowed Code = "method_not_allowed" // 405
	CodeUnsupportedMedia Code = "unsupported_media"  // body is not application/json: 415
	// CodeClientClosed is the answer to a request whose client went away
	// before it was served (499, as nginx logs it); nobody reads it, but
	// the access log and metrics tell it from a server error.
	CodeClientClosed Code = "client_closed"
	// The HTTP server refuses these before the API sees the request.
	CodeHeadersTooLarge     Code = "headers_too_large"     // request line and headers over the server's limit: 431
	CodeNotImplemented      Code = "not_implemented"       // a Transfer-Encoding the server does not support: 501
	CodeVersionNotSupported Code = "version_not_supported" // an HTTP version the server does not support: 505
)

// StatusClientClosed is the status of [CodeClientClosed].
const StatusClientClosed = 499

// codeStatus is the one table from error codes to HTTP status.
var codeStatus = map[Code]int{
	CodeInvalid:          http.StatusBadRequest,
	CodeValidation:       http.StatusUnprocessableEntity,
	CodeNotFound:         http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeConflict:         http.StatusConflict,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
	CodeForbidden:        http.StatusForbidden,
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeUnprocessable:    http.StatusUnprocessableEntity,
	CodeClientClosed:     StatusClientClosed,

	CodeHeadersTooLarge:     http.StatusRequestHeaderFieldsTooLarge,
	CodeNotImplemented:      http.StatusNotImplemented,
	CodeVersionNotSupported: http.StatusHTTPVersionNotSupported,
}

// statusOf returns the HTTP status of code (500 for an unknown code).
func statusOf(code Code) int {
	if s, ok := codeStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// sentinels maps engine and context errors to codes; the first match
// wins.
var sentinels = []struct {
	err  error
	code Code
	// message replaces the error's own, which is not written for users.
	message string
}{
	// Engine messages about rejected input and missing jobs are written
	// for users; they name no internals.
	{queue.ErrNotFound, CodeNotFound, ""},
	{queue.ErrWrongState, CodeConflict, ""},
	{queue.ErrUnknownKind, CodeValidation, ""},
	{queue.ErrKindUnavailable, CodeValidation, ""},
	{queue.ErrInvalid, CodeValidation, ""},
	{queue.ErrStopped, CodeUnavailable, ""},
	{context.DeadlineExceeded, CodeUnavailable, "the request did not finish in time; try again"},
	// A request whose client went away is answered 499 (see
	// WriteError); work cancelled while its client is still there was
	// stopped by the server, which is shutting down.
	{context.Canceled, CodeUnavailable, "the server stopped the request; try again"},
}

// FieldError names one bad field of a request; it is [apperr.FieldError].
type FieldError = apperr.FieldError

// Error is an error a client sees; it is [apperr.Error], which services
// return. Its Code gives the status.
type Error = apperr.Error

// Errorf returns an [Error] with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return apperr.Errorf(code, format, args...)
}

// Invalid returns a 422 validation error naming each bad field, or nil
// when fields is empty; see [apperr.Invalid].
func Invalid(fields []FieldError) error { return apperr.Invalid(fields) }

// ParamError is a 400 naming a path or query parameter.
func ParamError(param, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf("parameter %q: %s", param, msg), Fields: []FieldError{{Field: param, Message: msg}}}
}

// StatusOf returns the status the API answers err with.
func StatusOf(err error) int { return statusOf(classify(err).Code) }

// classify turns any error into an [Error]: an *Error as is, an engine
// or context sentinel by the sentinels table, anything else as internal.
func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	// A handler that streams a body (an upload) meets the route's limit
	// as a read error.
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("the request body is over the limit of %d bytes", tooLarge.Limit), Err: err}
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			msg := s.message
			if msg == "" {
				msg = err.Error()
			}
			return &Error{Code: s.code, Message: msg, Err: err}
		}
	}
	return &Error{Code: CodeInternal, Err: err}
}

// problem is the RFC 9457 body.
type problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Code     Code         `json:"code"`
	Errors   []FieldError `json:"errors,omitempty"`
	// RequestID lets a user quote the request in a report.
	RequestID string `json:"request_id,omitempty"`
}

// newProblem returns e as the body of the answer to a request for
// instance (a path; "" when unknown) with the request id.
func newProblem(e *Error, instance, requestID string) problem {
	status := statusOf(e.Code)
	title := http.StatusText(status)
	if status == StatusClientClosed {
		title = "Client Closed Request"
	}
	return problem{
		Type:      "urn:kiln:problem:" + string(e.Code),
		Title:     title,
		Status:    status,
		Detail:    e.Message,
		Instance:  instance,
		Code:      e.Code,
		Errors:    e.Fields,
		RequestID: requestID,
	}
}

// WriteError writes err as application/problem+json: this is the one
// place errors become statuses. Internal errors get a generic detail;
// their cause is logged with the request id at error level. A request
// whose client has gone away (its context is cancelled) is never an
// error of the server: what would be a 5xx is answered 499 and logged at
// debug level.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	status := statusOf(e.Code)
	log := Logger(r.Context())
	if status >= 500 && errors.Is(r.Context().Err(), context.Canceled) {
		e = &Error{Code: CodeClientClosed, Message: "the client closed the request before it was answered", Err: err}
		status = StatusClientClosed
		log.Debug("client went away", "err", err)
	}
	detail := e.Message
	switch {
	case status == http.StatusInternalServerError:
		detail = "an internal error occurred; quote the request id when reporting it"
		log.Error("request failed", "status", status, "err", err)
	case status >= 500:
		if detail == "" {
			detail = "the service is unavailable; try again later"
		}
		log.Warn("request failed", "status", status, "err", err)
	}
	p := newProblem(e, r.URL.Path, RequestID(r.Context()))
	p.Detail = detail
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="kiln"`)
	}
	if e.RetryAfter > 0 && status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(p); err != nil {
		log.Debug("write problem", "err", err)
	}
}

// WriteJSON writes v as application/json with status.
func WriteJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		Logger(r.Context()).Debug("write response", "err", err)
	}
}

// discardLogger is used when a request carries no logger.
var discardLogger = slog.New(slog.DiscardHandler)
