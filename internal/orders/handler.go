package orders

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
	"time"

	"github.com/kilnhq/kiln/internal/httpapi"
)

//go:embed openapi.json
var openAPI []byte

// Listing limits (the same as GET /api/v1/jobs but for the default).
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Handler serves the orders routes; it implements httpapi.Module.
type Handler struct {
	svc *Service
}

// NewHandler returns the HTTP handler of s.
func NewHandler(s *Service) *Handler { return &Handler{svc: s} }

// Routes returns the orders routes.
func (h *Handler) Routes() []httpapi.Route {
	const p = httpapi.Prefix + "/orders"
	return []httpapi.Route{
		{Pattern: "POST " + p, Handler: h.create},
		{Pattern: "GET " + p, Handler: h.list},
		{Pattern: "GET " + p + "/{id}", Handler: h.get},
		{Pattern: "PATCH " + p + "/{id}", Handler: h.patch},
		{Pattern: "DELETE " + p + "/{id}", Handler: h.delete},
	}
}

// OpenAPI returns the document fragment of the orders routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

// orderResponse is an order as the API shows it.
type orderResponse struct {
	ID          int64              `json:"id"`
	UserID      int64              `json:"user_id"`
	Status      Status             `json:"status"`
	AmountCents int64              `json:"amount_cents"`
	Currency    string             `json:"currency"`
	Note        string             `json:"note"`
	CreatedAt   httpapi.Timestamp  `json:"created_at"`
	UpdatedAt   httpapi.Timestamp  `json:"updated_at"`
	ConfirmedAt *httpapi.Timestamp `json:"confirmed_at"`
}

func toResponse(o Order) orderResponse {
	r := orderResponse{
		ID: o.ID, UserID: o.UserID, Status: o.Status, AmountCents: o.AmountCents, Currency: o.Currency, Note: o.Note,
		CreatedAt: httpapi.Timestamp(o.CreatedAt), UpdatedAt: httpapi.Timestamp(o.UpdatedAt),
	}
	if !o.ConfirmedAt.IsZero() {
		t := httpapi.Timestamp(o.ConfirmedAt)
		r.ConfirmedAt = &t
	}
	return r
}

// createdResponse is a new order and the id of its confirm job.
type createdResponse struct {
	orderResponse
	ConfirmJobID int64 `json:"confirm_job_id"`
}

// createRequest is the body of POST /api/v1/orders.
type createRequest struct {
	UserID      *int64 `json:"user_id"`
	AmountCents *int64 `json:"amount_cents"`
	Currency    string `json:"currency"`
	Note        string `json:"note"`
}

// patchRequest is the body of PATCH /api/v1/orders/{id}: present fields
// change; a null note clears it.
type patchRequest struct {
	Note   optional `json:"note"`
	Status optional `json:"status"`
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
	return PatchInput{Note: req.Note.ptr(), Status: req.Status.ptr()}, nil
}

// parseList parses the query string of GET /api/v1/orders. status may
// repeat or hold comma-separated values; the other parameters are given
// once. Unknown parameters are refused so that a typo does not list
// everything.
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
		case "status":
			for _, v := range vals {
				for part := range strings.SplitSeq(v, ",") {
					st := Status(strings.TrimSpace(part))
					if st == "" {
						continue
					}
					if !st.Valid() {
						return p, httpapi.ParamError(name, "must be pending, confirmed or cancelled")
					}
					if !slices.Contains(p.Statuses, st) {
						p.Statuses = append(p.Statuses, st)
					}
				}
			}
			continue
		case "user_id", "created_after", "created_before", "limit", "after":
		default:
			unknown = append(unknown, name)
			continue
		}
		if len(vals) != 1 {
			return p, httpapi.ParamError(name, "must be given once")
		}
		v := vals[0]
		switch name {
		case "user_id":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				return p, httpapi.ParamError(name, "must be a positive integer")
			}
			p.UserID = n
		case "created_after", "created_before":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return p, httpapi.ParamError(name, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
			}
			if name == "created_after" {
				p.CreatedAfter = t
			} else {
				p.CreatedBefore = t
			}
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
		return p, unknownParams(unknown, "user_id, status, created_after, created_before, limit or after")
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

// apiError maps a service error to what the client sees; id is the order
// the request is about (0 for none). An *httpapi.Error passes as is.
// Engine errors are internal here: a job the server fails to enqueue is
// its fault, not the client's.
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
		return &httpapi.Error{Code: httpapi.CodeNotFound, Message: fmt.Sprintf("order %d does not exist", id), Err: err}
	case errors.Is(err, ErrCancelled):
		return &httpapi.Error{Code: httpapi.CodeConflict, Message: fmt.Sprintf("order %d is cancelled and cannot change", id), Err: err}
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
	c, err := h.svc.Create(r.Context(), in)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, 0))
		return
	}
	w.Header().Set("Location", httpapi.Prefix+"/orders/"+strconv.FormatInt(c.Order.ID, 10))
	httpapi.WriteJSON(w, r, http.StatusCreated, createdResponse{toResponse(c.Order), c.ConfirmJobID})
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	o, err := h.svc.Get(r.Context(), id)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, id))
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, toResponse(o))
}

// listResponse is a page of orders, newest first. Next is the cursor of
// the following page (pass it as ?after=), or null on the last page.
type listResponse struct {
	Orders []orderResponse `json:"orders"`
	Next   *string         `json:"next"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	p, err := parseList(r.URL.RawQuery)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	page, err := h.svc.List(r.Context(), p)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, 0))
		return
	}
	out := listResponse{Orders: make([]orderResponse, len(page))}
	for i, o := range page {
		out.Orders[i] = toResponse(o)
	}
	if len(page) == p.Limit {
		next := strconv.FormatInt(page[len(page)-1].ID, 10)
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
	o, err := h.svc.Update(r.Context(), id, in)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, id))
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, toResponse(o))
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
