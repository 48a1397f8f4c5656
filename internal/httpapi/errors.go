package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// Code classifies an [Error]. Each code maps to one HTTP status in
// codeStatus.
type Code string

// The error codes.
const (
	CodeInvalid          Code = "invalid"            // malformed request: 400
	CodeValidation       Code = "validation"         // well-formed but unacceptable fields: 422
	CodeNotFound         Code = "not_found"          // 404
	CodeMethodNotAllowed Code = "method_not_allowed" // 405
	CodeConflict         Code = "conflict"           // wrong state for the operation: 409
	CodeTooLarge         Code = "too_large"          // request body over the limit: 413
	CodeUnsupportedMedia Code = "unsupported_media"  // body is not application/json: 415
	CodeUnavailable      Code = "unavailable"        // shutting down or overloaded: 503
	CodeInternal         Code = "internal"           // a bug or an unexpected failure: 500
	CodeForbidden        Code = "forbidden"          // the caller may not do this: 403
	CodeUnauthorized     Code = "unauthorized"       // no valid API token: 401
	CodeUnprocessable    Code = "unprocessable"      // a request that cannot be processed as sent (an Idempotency-Key reused with another body): 422
	// The HTTP server refuses these before the API sees the request.
	CodeHeadersTooLarge     Code = "headers_too_large"     // request line and headers over the server's limit: 431
	CodeNotImplemented      Code = "not_implemented"       // a Transfer-Encoding the server does not support: 501
	CodeVersionNotSupported Code = "version_not_supported" // an HTTP version the server does not support: 505
)

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

	CodeHeadersTooLarge:     http.StatusRequestHeaderFieldsTooLarge,
	CodeNotImplemented:      http.StatusNotImplemented,
	CodeVersionNotSupported: http.StatusHTTPVersionNotSupported,
}

// sentinels maps engine errors to codes; the first match wins.
var sentinels = []struct {
	err  error
	code Code
}{
	{queue.ErrNotFound, CodeNotFound},
	{queue.ErrWrongState, CodeConflict},
	{queue.ErrUnknownKind, CodeValidation},
	{queue.ErrKindUnavailable, CodeValidation},
	{queue.ErrInvalid, CodeValidation},
	{queue.ErrStopped, CodeUnavailable},
	{context.DeadlineExceeded, CodeUnavailable},
}

// FieldError names one bad field of a request and says what is wrong.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error a client sees. Message is safe to show; Err, if set,
// is the underlying cause, logged but never sent.
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
	Err     error
	// RetryAfter, if positive, is sent as a Retry-After header (in whole
	// seconds) when the status is 503; it tells a shed client when to
	// come back. The status still comes from Code alone.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Status returns the HTTP status of e's code (500 for an unknown code).
func (e *Error) Status() int {
	if s, ok := codeStatus[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Errorf returns an [Error] with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ParamError is a 400 naming a path or query parameter.
func ParamError(param, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf("parameter %q: %s", param, msg), Fields: []FieldError{{param, msg}}}
}

// classify turns any error into an [Error]: an *Error as is, an engine
// sentinel by the sentinels table, anything else as internal.
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
			// Engine messages about rejected input and missing jobs are
			// written for users; they name no internals.
			return &Error{Code: s.code, Message: err.Error(), Err: err}
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

// problem returns e as the body of the answer to a request for instance
// (a path; "" when unknown) with the request id.
func (e *Error) problem(instance, requestID string) problem {
	status := e.Status()
	return problem{
		Type:      "urn:kiln:problem:" + string(e.Code),
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    e.Message,
		Instance:  instance,
		Code:      e.Code,
		Errors:    e.Fields,
		RequestID: requestID,
	}
}

// WriteError writes err as application/problem+json. Internal errors get a
// generic detail; their cause is logged with the request id.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	status := e.Status()
	detail := e.Message
	switch {
	case status == http.StatusInternalServerError:
		detail = "an internal error occurred; quote the request id when reporting it"
		Logger(r.Context()).Error("request failed", "status", status, "err", err)
	case status >= 500:
		if detail == "" {
			detail = "the service is unavailable; try again later"
		}
		Logger(r.Context()).Warn("request failed", "status", status, "err", err)
	}
	p := e.problem(r.URL.Path, RequestID(r.Context()))
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
		Logger(r.Context()).Debug("write problem", "err", err)
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

// Invalid returns a 422 validation error naming each bad field. It
// returns nil when fields is empty, so a handler can collect problems and
// call it once.
func Invalid(fields []FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	msgs := make([]string, len(fields))
	for i, f := range fields {
		msgs[i] = fmt.Sprintf("%s: %s", f.Field, f.Message)
	}
	return &Error{Code: CodeValidation, Message: "invalid fields: " + strings.Join(msgs, "; "), Fields: fields}
}
