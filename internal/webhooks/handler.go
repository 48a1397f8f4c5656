package webhooks

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/queue"
)

//go:embed openapi.json
var openAPI []byte

// Listing limits.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// Handler serves the webhooks API. It implements httpapi.Module.
type Handler struct {
	s *Service
}

// NewHandler returns the HTTP handler of s.
func NewHandler(s *Service) *Handler { return &Handler{s: s} }

var _ httpapi.Module = (*Handler)(nil)

// Routes returns the webhooks routes. Registering an endpoint needs an
// admin token, as deleting one does: it decides where kiln sends data.
func (h *Handler) Routes() []httpapi.Route {
	p := httpapi.Prefix
	return []httpapi.Route{
		{Pattern: "POST " + p + "/webhooks", Handler: h.create, Scope: httpapi.ScopeAdmin},
		{Pattern: "GET " + p + "/webhooks", Handler: h.list},
		{Pattern: "GET " + p + "/webhooks/{id}", Handler: h.get},
		{Pattern: "DELETE " + p + "/webhooks/{id}", Handler: h.delete},
		{Pattern: "POST " + p + "/webhooks/{id}/deliveries", Handler: h.deliver},
		{Pattern: "GET " + p + "/webhooks/{id}/deliveries", Handler: h.deliveries},
		{Pattern: "GET " + p + "/webhook-deliveries/{id}", Handler: h.delivery},
	}
}

// OpenAPI returns the OpenAPI fragment of the webhooks routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

func jobPath(id int64) string      { return fmt.Sprintf("%s/jobs/%d", httpapi.Prefix, id) }
func endpointPath(id int64) string { return fmt.Sprintf("%s/webhooks/%d", httpapi.Prefix, id) }
func deliveryPath(id int64) string {
	return fmt.Sprintf("%s/webhook-deliveries/%d", httpapi.Prefix, id)
}

// breakerResponse is a host's circuit breaker as this process sees it.
type breakerResponse struct {
	Host                string             `json:"host"`
	State               string             `json:"state"`
	ConsecutiveFailures int                `json:"consecutive_failures"`
	OpenUntil           *httpapi.Timestamp `json:"open_until"`
}

// endpointResponse is an endpoint as the API shows it. Secret is only
// set in the answer to its creation.
type endpointResponse struct {
	ID          int64             `json:"id"`
	URL         string            `json:"url"`
	Description string            `json:"description"`
	Secret      string            `json:"secret,omitempty"`
	SecretHint  string            `json:"secret_hint"`
	CreatedAt   httpapi.Timestamp `json:"created_at"`
	Deliveries  string            `json:"deliveries"`
	Breaker     *breakerResponse  `json:"breaker,omitempty"`
}

func toEndpoint(e Endpoint) endpointResponse {
	return endpointResponse{
		ID: e.ID, URL: e.URL, Description: e.Description, SecretHint: e.SecretHint(),
		CreatedAt: httpapi.Timestamp(e.CreatedAt), Deliveries: endpointPath(e.ID) + "/deliveries",
	}
}

type createRequest struct {
	URL         string `json:"url"`
	Description string `json:"description"`
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	e, err := h.s.CreateEndpoint(r.Context(), EndpointInput(req))
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := toEndpoint(e)
	out.Secret = e.Secret
	w.Header().Set("Location", endpointPath(e.ID))
	httpapi.WriteJSON(w, r, http.StatusCreated, out)
}

// endpointList is a page of endpoints, newest first; Next is the cursor
// of the following page (?after=), null on the last.
type endpointList struct {
	Webhooks []endpointResponse `json:"webhooks"`
	Next     *string            `json:"next"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	p, err := parseList(r.URL.RawQuery)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	es, err := h.s.Endpoints(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := endpointList{Webhooks: make([]endpointResponse, len(es))}
	for i, e := range es {
		out.Webhooks[i] = toEndpoint(e)
	}
	if len(es) == p.Limit {
		out.Next = cursor(es[len(es)-1].ID)
	}
	httpapi.WriteJSON(w, r, http.StatusOK, out)
}

func cursor(id int64) *string {
	s := strconv.FormatInt(id, 10)
	return &s
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	e, err := h.s.Endpoint(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := toEndpoint(e)
	b := h.s.Breaker(e.URL)
	out.Breaker = &breakerResponse{Host: b.Key, State: b.State.String(), ConsecutiveFailures: b.ConsecutiveFailures}
	if !b.OpenUntil.IsZero() {
		t := httpapi.Timestamp(b.OpenUntil)
		out.Breaker.OpenUntil = &t
	}
	httpapi.WriteJSON(w, r, http.StatusOK, out)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := h.s.DeleteEndpoint(r.Context(), id); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type deliverRequest struct {
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
}

// deliveryResponse is a delivery as the API shows it.
type deliveryResponse struct {
	ID        int64          `json:"id"`
	WebhookID int64          `json:"webhook_id"`
	Event     string         `json:"event"`
	Status    DeliveryStatus `json:"status"`
	// AttemptCount counts the attempts recorded, circuit-open ones
	// included.
	AttemptCount int                `json:"attempt_count"`
	LastError    string             `json:"last_error"`
	CreatedAt    httpapi.Timestamp  `json:"created_at"`
	FinishedAt   *httpapi.Timestamp `json:"finished_at"`
	JobID        int64              `json:"job_id"`
	// Job is the job's URL, Delivery the delivery's.
	Job      string `json:"job"`
	Delivery string `json:"delivery"`
}

func toDelivery(d Delivery) deliveryResponse {
	out := deliveryResponse{
		ID: d.ID, WebhookID: d.EndpointID, Event: d.Event, Status: d.Status, AttemptCount: d.Attempts, LastError: d.LastError,
		CreatedAt: httpapi.Timestamp(d.CreatedAt), JobID: d.JobID, Job: jobPath(d.JobID), Delivery: deliveryPath(d.ID),
	}
	if !d.FinishedAt.IsZero() {
		t := httpapi.Timestamp(d.FinishedAt)
		out.FinishedAt = &t
	}
	return out
}

// attemptResponse is one attempt as the API shows it.
type attemptResponse struct {
	Attempt      int                `json:"attempt"`
	JobAttempt   int                `json:"job_attempt"`
	StartedAt    httpapi.Timestamp  `json:"started_at"`
	DurationMS   int64              `json:"duration_ms"`
	StatusCode   *int               `json:"status_code"`
	Error        string             `json:"error"`
	Outcome      Outcome            `json:"outcome"`
	ResponseBody string             `json:"response_body"`
	NextRetryAt  *httpapi.Timestamp `json:"next_retry_at"`
}

// deliveryDetail is a delivery with its payload and attempts.
type deliveryDetail struct {
	deliveryResponse
	Payload  json.RawMessage   `json:"payload"`
	Attempts []attemptResponse `json:"attempts"`
}

func toDetail(d DeliveryDetail) deliveryDetail {
	out := deliveryDetail{deliveryResponse: toDelivery(d.Delivery), Payload: d.Payload, Attempts: make([]attemptResponse, len(d.Attempts))}
	for i, a := range d.Attempts {
		ar := attemptResponse{
			Attempt: a.Number, JobAttempt: a.JobAttempt, StartedAt: httpapi.Timestamp(a.StartedAt), DurationMS: a.Duration.Milliseconds(),
			Error: a.Error, Outcome: a.Outcome, ResponseBody: a.ResponseBody,
		}
		if a.StatusCode != 0 {
			c := a.StatusCode
			ar.StatusCode = &c
		}
		if !a.RetryAt.IsZero() {
			t := httpapi.Timestamp(a.RetryAt)
			ar.NextRetryAt = &t
		}
		out.Attempts[i] = ar
	}
	return out
}

func (h *Handler) deliver(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	var req deliverRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	d, err := h.s.Deliver(r.Context(), id, req.Event, req.Payload)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", jobPath(d.JobID))
	httpapi.WriteJSON(w, r, http.StatusAccepted, toDetail(DeliveryDetail{Delivery: d, Attempts: nil}))
}

// deliveryList is a page of deliveries, newest first.
type deliveryList struct {
	Deliveries []deliveryResponse `json:"deliveries"`
	Next       *string            `json:"next"`
}

func (h *Handler) deliveries(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	p, err := parseList(r.URL.RawQuery)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ds, err := h.s.Deliveries(r.Context(), id, p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := deliveryList{Deliveries: make([]deliveryResponse, len(ds))}
	for i, d := range ds {
		out.Deliveries[i] = toDelivery(d)
	}
	if len(ds) == p.Limit {
		out.Next = cursor(ds[len(ds)-1].ID)
	}
	httpapi.WriteJSON(w, r, http.StatusOK, out)
}

func (h *Handler) delivery(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	d, err := h.s.Delivery(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, toDetail(d))
}

// parseList reads ?limit= and ?after=; anything else is a 400.
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
	for _, name := range names {
		vals := q[name]
		switch name {
		case "limit", "after":
		default:
			return p, httpapi.ParamError(name, "unknown parameter (want limit or after)")
		}
		if len(vals) != 1 {
			return p, httpapi.ParamError(name, "must be given once")
		}
		v := vals[0]
		switch name {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxListLimit || strings.TrimLeft(v, "0123456789") != "" {
				return p, httpapi.ParamError(name, "must be an integer from 1 to %d", MaxListLimit)
			}
			p.Limit = n
		case "after":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 || strings.TrimLeft(v, "0123456789") != "" {
				return p, httpapi.ParamError(name, "must be the next cursor of a previous page")
			}
			p.AfterID = n
		}
	}
	return p, nil
}

// writeError maps the service's errors to problems.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		fe := make([]httpapi.FieldError, len(ve.Fields))
		for i, f := range ve.Fields {
			fe[i] = httpapi.FieldError{Field: f.Field, Message: f.Message}
		}
		err = httpapi.Invalid(fe)
	case errors.Is(err, ErrNotFound):
		what := "webhook"
		if strings.HasPrefix(r.URL.Path, httpapi.Prefix+"/webhook-deliveries/") {
			what = "webhook delivery"
		}
		err = &httpapi.Error{Code: httpapi.CodeNotFound, Message: fmt.Sprintf("no %s has this id", what), Err: err}
	case errors.Is(err, queue.ErrUnknownKind), errors.Is(err, queue.ErrInvalid), errors.Is(err, queue.ErrKindUnavailable):
		// The engine was set up without RegisterKinds: a deployment
		// fault, not bad input.
		err = &httpapi.Error{Code: httpapi.CodeInternal, Err: err}
	}
	httpapi.WriteError(w, r, err)
}
