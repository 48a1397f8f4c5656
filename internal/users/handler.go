package users

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kilnhq/kiln/internal/httpapi"
)

//go:embed openapi.json
var openAPI []byte

// Listing limits (the same as GET /api/v1/jobs but for the default).
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// maxSearch bounds the q filter: no longer string can be in a name or
	// an email.
	maxSearch = MaxEmail
)

// Handler serves the users routes; it implements httpapi.Module.
type Handler struct {
	svc *Service
}

// NewHandler returns the HTTP handler of s.
func NewHandler(s *Service) *Handler { return &Handler{svc: s} }

// Routes returns the users routes.
func (h *Handler) Routes() []httpapi.Route {
	const p = httpapi.Prefix + "/users"
	return []httpapi.Route{
		{Pattern: "POST " + p, Handler: h.create},
		{Pattern: "GET " + p, Handler: h.list},
		{Pattern: "GET " + p + "/{id}", Handler: h.get},
		{Pattern: "PATCH " + p + "/{id}", Handler: h.patch},
		{Pattern: "DELETE " + p + "/{id}", Handler: h.delete},
	}
}

// OpenAPI returns the document fragment of the users routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

// userResponse is a user as the API shows it.
type userResponse struct {
	ID        int64             `json:"id"`
	Email     string            `json:"email"`
	Name      string            `json:"name"`
	CreatedAt httpapi.Timestamp `json:"created_at"`
	UpdatedAt httpapi.Timestamp `json:"updated_at"`
}

func toResponse(u User) userResponse {
	return userResponse{ID: u.ID, Email: u.Email, Name: u.Name, CreatedAt: httpapi.Timestamp(u.CreatedAt), UpdatedAt: httpapi.Timestamp(u.UpdatedAt)}
}

// createRequest is the body of POST /api/v1/users.
type createRequest struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

// patchRequest is the body of PATCH /api/v1/users/{id}: present fields
// change. null asks to remove a field, which a required field refuses.
type patchRequest struct {
	Email optional `json:"email"`
	Name  optional `json:"name"`
}

// optional is a string field that records whether it was present; null
// reads as present and empty.
type optional struct {
	set bool
	v   string
}

// UnmarshalJSON implements json.Unmarshaler.
func (o *optional) UnmarshalJSON(b []byte) error {
	o.set = true
	if string(b) == "null" {
		o.v = ""
		return nil
	}
	return json.Unmarshal(b, &o.v)
}

func (o optional) ptr() *string {
	if !o.set {
		return nil
	}
	return &o.v
}

// decodeCreate reads the body of a create request.
func decodeCreate(r *http.Request) (CreateInput, error) {
	var req createRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		return CreateInput{}, err
	}
	return CreateInput(req), nil
}

// decodePatch reads the body of a patch request.
func decodePatch(r *http.Request) (PatchInput, error) {
	var req patchRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		return PatchInput{}, err
	}
	return PatchInput{Email: req.Email.ptr(), Name: req.Name.ptr()}, nil
}

// parseList parses the query string of GET /api/v1/users. Unknown
// parameters are refused so that a typo does not list everything.
func parseList(rawQuery string) (ListParams, error) {
	p := ListParams{Limit: DefaultListLimit}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return p, httpapi.Errorf(httpapi.CodeInvalid, "the query string is malformed")
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	var unknown []string
	for _, name := range names {
		vals := q[name]
		switch name {
		case "email", "q", "limit", "after":
		default:
			unknown = append(unknown, name)
			continue
		}
		if len(vals) != 1 {
			return p, httpapi.ParamError(name, "must be given once")
		}
		v := vals[0]
		switch name {
		case "email":
			if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
				return p, httpapi.ParamError(name, "must be UTF-8 text without control characters")
			}
			if v = strings.ToLower(strings.TrimSpace(v)); v == "" {
				return p, httpapi.ParamError(name, "must not be empty")
			}
			p.Email = v
		case "q":
			switch {
			case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
				return p, httpapi.ParamError(name, "must be UTF-8 text without control characters")
			case utf8.RuneCountInString(v) > maxSearch:
				return p, httpapi.ParamError(name, "must be at most %d characters", maxSearch)
			}
			p.Search = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxListLimit {
				return p, httpapi.ParamError(name, "must be an integer from 1 to %d", MaxListLimit)
			}
			p.Limit = n
		case "after":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				return p, httpapi.ParamError(name, "must be the next cursor of a previous page")
			}
			p.AfterID = n
		}
	}
	if len(unknown) > 0 {
		return p, unknownParams(unknown, "email, q, limit or after")
	}
	return p, nil
}

// unknownParams is a 400 naming every unknown query parameter.
func unknownParams(names []string, want string) error {
	fields := make([]httpapi.FieldError, len(names))
	quoted := make([]string, len(names))
	for i, n := range names {
		fields[i] = httpapi.FieldError{Field: n, Message: "unknown parameter"}
		quoted[i] = strconv.Quote(n)
	}
	return &httpapi.Error{
		Code:    httpapi.CodeInvalid,
		Message: fmt.Sprintf("unknown query parameter %s (want %s)", strings.Join(quoted, ", "), want),
		Fields:  fields,
	}
}

// apiError maps a service error to what the client sees; id is the user
// the request is about (0 for none). An *httpapi.Error passes as is.
func apiError(err error, id int64) error {
	var ve *ValidationError
	var he *httpapi.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &ve):
		fields := make([]httpapi.FieldError, len(ve.Fields))
		for i, f := range ve.Fields {
			fields[i] = httpapi.FieldError{Field: f.Field, Message: f.Message}
		}
		return httpapi.Invalid(fields)
	case errors.Is(err, ErrNotFound):
		return &httpapi.Error{Code: httpapi.CodeNotFound, Message: fmt.Sprintf("user %d does not exist", id), Err: err}
	case errors.Is(err, ErrEmailTaken):
		return &httpapi.Error{Code: httpapi.CodeConflict, Message: "another user already has this email",
			Fields: []httpapi.FieldError{{Field: "email", Message: "is already taken"}}, Err: err}
	case errors.Is(err, ErrHasOrders):
		return &httpapi.Error{Code: httpapi.CodeConflict,
			Message: fmt.Sprintf("user %d has orders and cannot be deleted; delete the orders first", id), Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &httpapi.Error{Code: httpapi.CodeUnavailable, Message: "the request did not finish in time; try again", Err: err}
	}
	return &httpapi.Error{Code: httpapi.CodeInternal, Err: err}
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	in, err := decodeCreate(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	u, err := h.svc.Create(r.Context(), in)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, 0))
		return
	}
	w.Header().Set("Location", httpapi.Prefix+"/users/"+strconv.FormatInt(u.ID, 10))
	httpapi.WriteJSON(w, r, http.StatusCreated, toResponse(u))
}

// get is the hot path: one primary-key SELECT on the read handle and one
// encoding.
func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	u, err := h.svc.Get(r.Context(), id)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, id))
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, toResponse(u))
}

// listResponse is a page of users, newest first. Next is the cursor of
// the following page (pass it as ?after=), or null on the last page.
type listResponse struct {
	Users []userResponse `json:"users"`
	Next  *string        `json:"next"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	p, err := parseList(r.URL.RawQuery)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	us, err := h.svc.List(r.Context(), p)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, 0))
		return
	}
	out := listResponse{Users: make([]userResponse, len(us))}
	for i, u := range us {
		out.Users[i] = toResponse(u)
	}
	if len(us) == p.Limit {
		next := strconv.FormatInt(us[len(us)-1].ID, 10)
		out.Next = &next
	}
	httpapi.WriteJSON(w, r, http.StatusOK, out)
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	in, err := decodePatch(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	u, err := h.svc.Update(r.Context(), id, in)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, id))
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, toResponse(u))
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := h.svc.Delete(r.Context(), id); err != nil {
		httpapi.WriteError(w, r, apiError(err, id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
