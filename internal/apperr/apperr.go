// Package apperr is the error vocabulary kiln's services share with its
// HTTP API. An [Error] says what kind of failure it is with a [Code] (a
// bad field, a missing record, a conflict, …), carries a message that is
// safe to show a client, names the fields at fault, and wraps its cause.
//
// Services return these errors, or wrap sentinels made with [New], and
// know nothing of HTTP; package httpapi maps each code to one status in
// one place.
package apperr

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Code classifies an [Error].
type Code string

// The codes a service may return.
const (
	CodeInvalid     Code = "invalid"     // a malformed request
	CodeValidation  Code = "validation"  // well-formed but unacceptable fields
	CodeNotFound    Code = "not_found"   // no such record
	CodeConflict    Code = "conflict"    // the record is in the wrong state for the operation
	CodeTooLarge    Code = "too_large"   // over a size limit
	CodeUnavailable Code = "unavailable" // shutting down, overloaded or timed out: try again later
	CodeInternal    Code = "internal"    // a bug or an unexpected failure
	CodeForbidden   Code = "forbidden"   // the caller may not do this
	// CodeUnauthorized: the caller is not authenticated.
	CodeUnauthorized Code = "unauthorized"
	// CodeUnprocessable: a request that cannot be processed as sent
	// (an Idempotency-Key reused with another body).
	CodeUnprocessable Code = "unprocessable"
)

// FieldError names one bad field of a request and says what is wrong.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error a client may see. Message is safe to show; Err, if
// set, is the underlying cause, logged but never shown.
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
	Err     error
	// RetryAfter, if positive, tells a client that is turned away
	// (CodeUnavailable) when to come back.
	RetryAfter time.Duration
}

// Error returns the message and the cause.
func (e *Error) Error() string {
	switch {
	case e.Err == nil:
		return e.Message
	case e.Message == "":
		return e.Err.Error()
	}
	return e.Message + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an error with code and message, for a sentinel: test for
// it with errors.Is, and wrap it with [Wrapf] to say which record or
// request it is about.
func New(code Code, message string) *Error {
	return &Error{Code: code, Message: message}
}

// Errorf returns an error with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrapf returns an error that wraps err with a formatted message and the
// code and fields of the first [*Error] in err's chain ([CodeInternal]
// when there is none), so that errors.Is(result, err) holds.
func Wrapf(err error, format string, args ...any) *Error {
	out := &Error{Code: CodeInternal, Message: fmt.Sprintf(format, args...), Err: err}
	var e *Error
	if errors.As(err, &e) {
		out.Code, out.Fields = e.Code, e.Fields
	}
	return out
}

// Field returns an error with code about one field: its message names
// the field.
func Field(code Code, field, message string) *Error {
	return &Error{Code: code, Message: fmt.Sprintf("field %q %s", field, message), Fields: []FieldError{{field, message}}}
}

// Invalid returns a [CodeValidation] error naming each bad field, or nil
// when fields is empty, so that a caller can collect problems and call it
// once.
func Invalid(fields []FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	msgs := make([]string, len(fields))
	for i, f := range fields {
		msgs[i] = f.Field + ": " + f.Message
	}
	return &Error{Code: CodeValidation, Message: "invalid fields: " + strings.Join(msgs, "; "), Fields: fields}
}

// Fields collects the bad fields of one input.
type Fields []FieldError

// Add records that field is bad, saying why.
func (f *Fields) Add(field, format string, args ...any) {
	*f = append(*f, FieldError{field, fmt.Sprintf(format, args...)})
}

// Err returns the fields as one [Invalid] error, or nil if there are none.
func (f Fields) Err() error { return Invalid(f) }
