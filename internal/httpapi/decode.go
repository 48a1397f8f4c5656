package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/kilnhq/kiln/internal/apperr"
)

// readBody checks that the body is application/json (else 415) and reads
// it within the body limit (else 413). Decode it with decodeBytes.
func readBody(r *http.Request) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, Errorf(CodeUnsupportedMedia, "the request body must be application/json")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, Errorf(CodeTooLarge, "the request body is larger than %d bytes", mbe.Limit)
		}
		return nil, Errorf(CodeInvalid, "could not read the request body")
	}
	return body, nil
}

// decodeBytes decodes body into dst strictly: unknown fields, trailing
// data and wrong types are 400 problems naming the field.
func decodeBytes(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return Errorf(CodeInvalid, "the request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Errorf(CodeInvalid, "the request body has data after the JSON object")
	}
	return nil
}

// jsonError turns a decoding error into a 400 that names the field.
func jsonError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return Errorf(CodeInvalid, "the request body is not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return Errorf(CodeInvalid, "the request body must be a JSON object, not %s", typ.Value)
		}
		msg := fmt.Sprintf("must be %s, not %s", jsonType(typ.Type.Kind().String()), typ.Value)
		return apperr.Field(CodeInvalid, typ.Field, msg)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return Errorf(CodeInvalid, "the request body is truncated JSON")
	}
	// encoding/json reports unknown fields only as text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return &Error{Code: CodeInvalid, Message: fmt.Sprintf("unknown field %q", name), Fields: []FieldError{{Field: name, Message: "unknown field"}}}
	}
	return Errorf(CodeInvalid, "the request body could not be decoded: %v", err)
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	}
	return "a different type"
}

// DecodeJSON reads r's body as application/json within the body limit and
// decodes it strictly into dst. Its errors are 415, 413 or 400 problems
// that name the bad field.
func DecodeJSON(r *http.Request, dst any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeBytes(body, dst)
}

// Optional is a string field of a request body that records whether it
// was sent, for a PATCH that changes only the fields it names; null
// reads as sent and empty.
type Optional struct {
	set   bool
	value string
}

// UnmarshalJSON implements json.Unmarshaler.
func (o *Optional) UnmarshalJSON(b []byte) error {
	o.set = true
	if string(b) == "null" {
		o.value = ""
		return nil
	}
	return json.Unmarshal(b, &o.value)
}

// Ptr returns nil when the field was not sent, else its value.
func (o Optional) Ptr() *string {
	if !o.set {
		return nil
	}
	return &o.value
}

// Body returns a reader of request bodies for [Create] and [Change]: it
// decodes the body strictly ([DecodeJSON]) into a Req and returns what
// convert makes of it.
func Body[Req, In any](convert func(Req) In) func(*http.Request) (In, error) {
	return func(r *http.Request) (In, error) {
		var req Req
		err := DecodeJSON(r, &req)
		return convert(req), err
	}
}
