package videos

import (
	_ "embed"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/queue"
)

//go:embed openapi.json
var openAPI []byte

// Handler serves the videos API. It implements httpapi.Module.
type Handler struct {
	s *Service
}

// NewHandler returns the HTTP handler of s.
func NewHandler(s *Service) *Handler { return &Handler{s: s} }

var _ httpapi.Module = (*Handler)(nil)

// uploadTimeout is how long an upload may take to arrive.
const uploadTimeout = 15 * time.Minute

// Routes returns the videos routes.
func (h *Handler) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Pattern: "POST " + httpapi.Prefix + "/videos", Handler: h.create, BodyLimit: h.s.MaxUploadBytes(), ReadTimeout: uploadTimeout},
		{Pattern: "GET " + httpapi.Prefix + "/videos/{id}", Handler: httpapi.Show(h.s.Get, func(st Status) videoResponse { return toResponse(st.Record, st.Job) })},
		{Pattern: "GET " + httpapi.Prefix + "/videos/{id}/thumbnail", Handler: blobs.Download(h.s.Blobs(), h.s.Thumbnail, thumbnailFile)},
	}
}

// OpenAPI returns the OpenAPI fragment of the videos routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

// createParams are the query parameters of POST /api/v1/videos.
type createParams struct {
	atMS     int64
	width    int
	filename string
}

// parseCreate reads the query of POST /api/v1/videos: at (seconds,
// default 1), width (pixels, default 320) and filename.
func parseCreate(q map[string][]string) (createParams, error) {
	p := createParams{atMS: 1000, width: DefaultWidth, filename: "video"}
	var fe []httpapi.FieldError
	one := func(name string) (string, bool) {
		v, ok := q[name]
		if !ok {
			return "", false
		}
		if len(v) != 1 {
			fe = append(fe, httpapi.FieldError{Field: name, Message: "must be given once"})
			return "", false
		}
		return v[0], true
	}
	if s, ok := one("at"); ok {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || f < 0 || f*1000 > MaxAtMS {
			fe = append(fe, httpapi.FieldError{Field: "at", Message: fmt.Sprintf("must be a time in seconds between 0 and %d, such as 2.5", MaxAtMS/1000)})
		} else {
			p.atMS = int64(math.Round(f * 1000))
		}
	}
	if s, ok := one("width"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < MinWidth || n > MaxWidth {
			fe = append(fe, httpapi.FieldError{Field: "width", Message: fmt.Sprintf("must be an integer between %d and %d", MinWidth, MaxWidth)})
		} else {
			p.width = n
		}
	}
	if s, ok := one("filename"); ok {
		if s = blobs.SanitizeFilename(s); s != "" {
			p.filename = s
		}
	}
	return p, httpapi.Invalid(fe)
}

// videoContentType checks the upload's Content-Type: video/* or
// application/octet-stream.
func videoContentType(header string) (string, error) {
	mt, _, err := mime.ParseMediaType(header)
	if err != nil || !(strings.HasPrefix(mt, "video/") || mt == "application/octet-stream") {
		return "", httpapi.Errorf(httpapi.CodeUnsupportedMedia,
			"send the video itself as the body with Content-Type video/mp4 (or another video/* type, or application/octet-stream); got %q", header)
	}
	return mt, nil
}

// videoResponse is a video as the API shows it; its fields follow the
// images API's.
type videoResponse struct {
	ID       int64   `json:"id"`
	Filename string  `json:"filename"`
	At       float64 `json:"at"`
	Width    int     `json:"width"`
	// Status is pending until the thumbnail is made (done) or cannot be
	// (failed, with Error saying why).
	Status string  `json:"status"`
	Error  *string `json:"error"`
	// JobState and Progress are the job's, while it is kept.
	JobState    string     `json:"job_state,omitempty"`
	Progress    int        `json:"progress"`
	JobID       int64      `json:"job_id"`
	Job         string     `json:"job"`
	Thumbnail   *thumbInfo `json:"thumbnail"`
	CreatedAt   time.Time  `json:"created_at"`
	CompletedAt *time.Time `json:"completed_at"`
}

type thumbInfo struct {
	URL    string `json:"url"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// The values of videoResponse.Status.
const (
	statusPending = "pending"
	statusDone    = "done"
	statusFailed  = "failed"
)

// thumbnailPath is the API path of video id's thumbnail.
func thumbnailPath(id int64) string { return fmt.Sprintf("%s/videos/%d/thumbnail", httpapi.Prefix, id) }

func toResponse(v Video, j *queue.Job) videoResponse {
	out := videoResponse{
		ID: v.ID, Filename: v.Filename, At: float64(v.AtMS) / 1000, Width: v.Width,
		Status: statusPending, JobID: v.JobID, Job: httpapi.JobPath(v.JobID), CreatedAt: v.CreatedAt,
	}
	if j != nil {
		out.JobState, out.Progress = string(j.State), j.Progress
	}
	switch {
	case v.Done():
		out.Status, out.Progress = statusDone, 100
		out.Thumbnail = &thumbInfo{URL: thumbnailPath(v.ID), Width: v.ThumbnailWidth, Height: v.ThumbnailHeight}
	case v.Error != "":
		out.Status, out.Error = statusFailed, &v.Error
	case j != nil && (j.State == queue.StateFailed || j.State == queue.StateCancelled):
		// The job ended without recording why on the video (retries
		// used up on a transient error, or a cancel).
		msg := "the thumbnail job " + string(j.State)
		if n := len(j.Errors); n > 0 {
			msg += ": " + j.Errors[n-1].Error
		}
		out.Status, out.Error = statusFailed, &msg
	}
	if !v.CompletedAt.IsZero() {
		out.CompletedAt = &v.CompletedAt
	}
	return out
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	// Refuse before reading a large body for nothing.
	if err := h.s.Available(); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	p, err := parseCreate(r.URL.Query())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ct, err := videoContentType(r.Header.Get("Content-Type"))
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	v, err := h.s.Upload(r.Context(), ct, r.Body, p.filename, p.atMS, p.width)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", httpapi.JobPath(v.JobID))
	out := toResponse(v, nil)
	out.JobState = string(queue.StateAvailable)
	httpapi.WriteJSON(w, r, http.StatusAccepted, out)
}

// thumbnailFile names the blob of v's thumbnail and its download name.
func thumbnailFile(v Video) (blobID, filename string) {
	return v.ThumbnailBlobID, fmt.Sprintf("%s-%d.jpg", strings.TrimSuffix(v.Filename, ".mp4"), v.ID)
}
