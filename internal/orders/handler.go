package orders

import (
	_ "embed"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/kilnhq/kiln/internal/httpapi"
)

//go:embed openapi.json
var openAPI []byte

// Listing limits.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// Handler serves the orders routes; it implements httpapi.Module.
type Handler struct {
	svc *Service
}

// NewHandler returns the HTTP handler of svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

var _ httpapi.Module = (*Handler)(nil)

// Routes returns the orders routes.
func (h *Handler) Routes() []httpapi.Route {
	const p = httpapi.Prefix + "/orders"
	return []httpapi.Route{
		{Pattern: "POST " + p, Handler: httpapi.Create(decodeCreate, h.svc.Create, toCreated, func(c Created) string { return orderPath(c.Order.ID) })},
		{Pattern: "GET " + p, Handler: h.list},
		{Pattern: "GET " + p + "/{id}", Handler: httpapi.Show(h.svc.Get, toResponse)},
		{Pattern: "PATCH " + p + "/{id}", Handler: httpapi.Change(decodePatch, h.svc.Update, toResponse)},
		{Pattern: "DELETE " + p + "/{id}", Handler: httpapi.Remove(h.svc.Delete)},
	}
}

// OpenAPI returns the document fragment of the orders routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

// orderPath is the API path of order id.
func orderPath(id int64) string { return httpapi.Prefix + "/orders/" + strconv.FormatInt(id, 10) }

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

func toCreated(c Created) createdResponse {
	return createdResponse{toResponse(c.Order), c.ConfirmJobID}
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
	Note   httpapi.Optional `json:"note"`
	Status httpapi.Optional `json:"status"`
}

// decodeCreate and decodePatch read the bodies of a create and a patch
// request.
var (
	decodeCreate = httpapi.Body(func(r createRequest) CreateInput { return CreateInput(r) })
	decodePatch  = httpapi.Body(func(r patchRequest) PatchInput { return PatchInput{Note: r.Note.Ptr(), Status: r.Status.Ptr()} })
)

// parseList parses the query string of GET /api/v1/orders by the rules
// of httpapi.ParseList; status may repeat or hold comma-separated values.
func parseList(rawQuery string) (ListParams, error) {
	var p ListParams
	at := func(dst *time.Time) func(string) error {
		return func(v string) error {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return errors.New("must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
			}
			*dst = t
			return nil
		}
	}
	page, err := httpapi.ParseList(rawQuery, httpapi.ListSpec{DefaultLimit: defaultListLimit, MaxLimit: maxListLimit, Filters: []httpapi.Filter{
		{Name: "user_id", Parse: func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				return errors.New("must be a positive integer")
			}
			p.UserID = n
			return nil
		}},
		{Name: "status", Multi: true, Parse: func(v string) error {
			st := Status(v)
			if !st.Valid() {
				return errors.New("must be pending, confirmed or cancelled")
			}
			if !slices.Contains(p.Statuses, st) {
				p.Statuses = append(p.Statuses, st)
			}
			return nil
		}},
		{Name: "created_after", Parse: at(&p.CreatedAfter)},
		{Name: "created_before", Parse: at(&p.CreatedBefore)},
	}})
	p.Limit, p.AfterID = page.Limit, page.After
	return p, err
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	p, err := parseList(r.URL.RawQuery)
	var os []Order
	if err == nil {
		os, err = h.svc.List(r.Context(), p)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, httpapi.NewList("orders", os, p.Limit, toResponse, func(o Order) int64 { return o.ID }))
}
