package webhooks

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/kilnhq/kiln/internal/httpapi"
)

//go:embed openapi.json
var openAPI []byte

// listSpec is the query of the webhooks' lists.
var listSpec = httpapi.ListSpec{DefaultLimit: 50, MaxLimit: 500}

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
		{Pattern: "POST " + p + "/webhooks", Handler: httpapi.Create(decodeCreate, h.s.CreateEndpoint, toCreated,
			func(e Endpoint) string { return endpointPath(e.ID) }), Scope: httpapi.ScopeAdmin},
		{Pattern: "GET " + p + "/webhooks", Handler: h.list},
		{Pattern: "GET " + p + "/webhooks/{id}", Handler: httpapi.Show(h.s.Endpoint, h.withBreaker)},
		{Pattern: "DELETE " + p + "/webhooks/{id}", Handler: httpapi.Remove(h.s.DeleteEndpoint)},
		{Pattern: "POST " + p + "/webhooks/{id}/deliveries", Handler: h.deliver},
		{Pattern: "GET " + p + "/webhooks/{id}/deliveries", Handler: h.deliveries},
		{Pattern: "GET " + p + "/webhook-deliveries/{id}", Handler: httpapi.Show(h.s.Delivery, toDetail)},
	}
}

// OpenAPI returns the OpenAPI fragment of the webhooks routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

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

// decodeCreate reads the body of a create request.
var decodeCreate = httpapi.Body(func(r createRequest) EndpointInput { return EndpointInput(r) })

// toCreated shows a new endpoint: with its secret, this once.
func toCreated(e Endpoint) endpointResponse {
	out := toEndpoint(e)
	out.Secret = e.Secret
	return out
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	page, err := httpapi.ParseList(r.URL.RawQuery, listSpec)
	var es []Endpoint
	if err == nil {
		es, err = h.s.Endpoints(r.Context(), ListParams{Limit: page.Limit, AfterID: page.After})
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, httpapi.NewList("webhooks", es, page.Limit, toEndpoint, func(e Endpoint) int64 { return e.ID }))
}

// withBreaker shows e with the circuit breaker of its host.
func (h *Handler) withBreaker(e Endpoint) endpointResponse {
	out := toEndpoint(e)
	b := h.s.Breaker(e.URL)
	out.Breaker = &breakerResponse{Host: b.Key, State: b.State.String(), ConsecutiveFailures: b.ConsecutiveFailures}
	if !b.OpenUntil.IsZero() {
		t := httpapi.Timestamp(b.OpenUntil)
		out.Breaker.OpenUntil = &t
	}
	return out
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
		CreatedAt: httpapi.Timestamp(d.CreatedAt), JobID: d.JobID, Job: httpapi.JobPath(d.JobID), Delivery: deliveryPath(d.ID),
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
		httpapi.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", httpapi.JobPath(d.JobID))
	httpapi.WriteJSON(w, r, http.StatusAccepted, toDetail(DeliveryDetail{Delivery: d, Attempts: nil}))
}

func (h *Handler) deliveries(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	var page httpapi.Page
	if err == nil {
		page, err = httpapi.ParseList(r.URL.RawQuery, listSpec)
	}
	var ds []Delivery
	if err == nil {
		ds, err = h.s.Deliveries(r.Context(), id, ListParams{Limit: page.Limit, AfterID: page.After})
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, httpapi.NewList("deliveries", ds, page.Limit, toDelivery, func(d Delivery) int64 { return d.ID }))
}
