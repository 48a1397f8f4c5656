package reports

import (
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/queue"
)

//go:embed openapi.json
var openAPI []byte

// Handler serves the reports API. It implements httpapi.Module.
type Handler struct {
	s *Service
}

// NewHandler returns the HTTP handler of s.
func NewHandler(s *Service) *Handler { return &Handler{s: s} }

var _ httpapi.Module = (*Handler)(nil)

// Routes returns the reports routes.
func (h *Handler) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Pattern: "POST " + httpapi.Prefix + "/reports", Handler: h.create},
		{Pattern: "GET " + httpapi.Prefix + "/reports/{id}", Handler: httpapi.Show(h.s.Get, toResponse)},
		{Pattern: "GET " + httpapi.Prefix + "/reports/{id}/download", Handler: blobs.Download(h.s.Blobs(), h.s.Download, downloadFile)},
	}
}

// OpenAPI returns the OpenAPI fragment of the reports routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

// createRequest is the body of POST /api/v1/reports. Times and the
// currency are pointers so that a field given empty or malformed is
// told apart from one left out.
type createRequest struct {
	Kind     string   `json:"kind"`
	GroupBy  string   `json:"group_by"`
	From     *string  `json:"from"`
	To       *string  `json:"to"`
	Statuses []string `json:"statuses"`
	Currency *string  `json:"currency"`
}

// fieldOrder ranks fields as the request lists them, so that problems
// are reported in that order.
var fieldOrder = []string{"kind", "group_by", "from", "to", "statuses", "currency"}

func fieldRank(field string) int {
	name, _, _ := strings.Cut(field, "[")
	if i := slices.Index(fieldOrder, name); i >= 0 {
		return i
	}
	return len(fieldOrder)
}

// decodeCreate reads and validates a create request: 415, 413 or 400
// for a body that is not the expected JSON, 422 naming every bad field.
func decodeCreate(r *http.Request) (Params, error) {
	var req createRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		return Params{}, err
	}
	var fe apperr.Fields
	p := Params{Kind: req.Kind, GroupBy: req.GroupBy, Statuses: req.Statuses}
	parseTime := func(field string, s *string) time.Time {
		if s == nil {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, *s)
		if err != nil {
			fe.Add(field, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
			return time.Time{}
		}
		return t
	}
	p.From = parseTime("from", req.From)
	p.To = parseTime("to", req.To)
	if req.Currency != nil {
		if *req.Currency == "" {
			fe.Add("currency", "must be an ISO 4217 code: 3 upper-case letters such as EUR")
		}
		p.Currency = *req.Currency
	}
	if err := p.Normalize(); err != nil {
		var ve *apperr.Error
		if !errors.As(err, &ve) {
			return Params{}, err
		}
		fe = append(fe, ve.Fields...)
	}
	slices.SortStableFunc(fe, func(a, b apperr.FieldError) int { return fieldRank(a.Field) - fieldRank(b.Field) })
	if err := fe.Err(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// acceptedResponse answers POST /api/v1/reports.
type acceptedResponse struct {
	ReportID int64 `json:"report_id"`
	JobID    int64 `json:"job_id"`
	// Status is the job's URL, to poll.
	Status string `json:"status"`
	// Report is the report's URL.
	Report string `json:"report"`
}

func reportPath(id int64) string { return fmt.Sprintf("%s/reports/%d", httpapi.Prefix, id) }

// downloadPath is the API path of report id's CSV.
func downloadPath(id int64) string { return reportPath(id) + "/download" }

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	p, err := decodeCreate(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	c, err := h.s.Create(r.Context(), p)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", httpapi.JobPath(c.JobID))
	httpapi.WriteJSON(w, r, http.StatusAccepted, acceptedResponse{
		ReportID: c.ReportID, JobID: c.JobID, Status: httpapi.JobPath(c.JobID), Report: reportPath(c.ReportID),
	})
}

// reportResponse is a report as the API shows it.
type reportResponse struct {
	ID     int64  `json:"id"`
	Kind   string `json:"kind"`
	Params Params `json:"params"`
	JobID  int64  `json:"job_id"`
	// State is the job's state; when the job has been pruned, completed
	// for a finished report and unknown otherwise.
	State           string     `json:"state"`
	Progress        int        `json:"progress"`
	ProgressMessage string     `json:"progress_message,omitempty"`
	RowCount        *int64     `json:"row_count"`
	CreatedAt       time.Time  `json:"created_at"`
	CompletedAt     *time.Time `json:"completed_at"`
	Status          string     `json:"status"`
	Download        *string    `json:"download"`
}

func toResponse(st Status) reportResponse {
	rp := st.Record
	out := reportResponse{
		ID: rp.ID, Kind: rp.Params.Kind, Params: rp.Params, JobID: rp.JobID,
		CreatedAt: rp.CreatedAt, Status: httpapi.JobPath(rp.JobID),
	}
	switch {
	case st.Job != nil:
		out.State = string(st.Job.State)
		out.Progress, out.ProgressMessage = st.Job.Progress, st.Job.ProgressMessage
	case rp.Complete():
		out.State, out.Progress = string(queue.StateCompleted), 100
	default:
		out.State = "unknown"
	}
	if rp.Complete() {
		rows, done, dl := rp.RowCount, rp.CompletedAt, downloadPath(rp.ID)
		out.RowCount, out.CompletedAt, out.Download = &rows, &done, &dl
	}
	return out
}

// downloadFile names the blob of rp's CSV and its download name.
func downloadFile(rp Report) (blobID, name string) { return rp.BlobID, filename(rp) }
