package images

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/queue"
)

//go:embed openapi.json
var openAPI []byte

// Listing limits (those of the other lists).
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// multipartOverhead is what a multipart upload adds to its file:
// boundaries, part headers and the sizes field.
const multipartOverhead = 64 << 10

// Handler serves the images API. It implements httpapi.Module.
type Handler struct {
	s *Service
}

// NewHandler returns the HTTP handler of s.
func NewHandler(s *Service) *Handler { return &Handler{s: s} }

var _ httpapi.Module = (*Handler)(nil)

// Routes returns the images routes.
func (h *Handler) Routes() []httpapi.Route {
	const p = httpapi.Prefix + "/images"
	return []httpapi.Route{
		{Pattern: "POST " + p, Handler: h.upload, BodyLimit: h.BodyLimit(), ReadTimeout: h.s.opts.UploadTimeout},
		{Pattern: "GET " + p, Handler: h.list},
		{Pattern: "GET " + p + "/{id}", Handler: h.get},
		{Pattern: "GET " + p + "/{id}/original", Handler: h.original},
		{Pattern: "GET " + p + "/{id}/variants/{size}", Handler: h.variant},
	}
}

// OpenAPI returns the OpenAPI fragment of the images routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

// BodyLimit is the request body limit of POST /api/v1/images, which its
// route sets instead of the API's: the largest upload
// (Options.MaxUploadBytes) plus room for the multipart framing.
func (h *Handler) BodyLimit() int64 { return h.s.opts.MaxUploadBytes + multipartOverhead }

// variantResponse is a variant as the API shows it.
type variantResponse struct {
	Size        int    `json:"size"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Bytes       int64  `json:"bytes"`
	ContentType string `json:"content_type"`
	Download    string `json:"download"`
}

// imageResponse is an image as the API shows it.
type imageResponse struct {
	ID          int64             `json:"id"`
	Filename    string            `json:"filename"`
	ContentType string            `json:"content_type"`
	Bytes       int64             `json:"bytes"`
	Width       *int              `json:"width"`
	Height      *int              `json:"height"`
	Status      string            `json:"status"`
	Error       *string           `json:"error"`
	Sizes       []int             `json:"sizes"`
	Variants    []variantResponse `json:"variants"`
	JobID       int64             `json:"job_id"`
	// Job is the job's URL, to poll.
	Job string `json:"job"`
	// Original is the original's download URL; null once it is gone.
	Original    *string            `json:"original"`
	CreatedAt   httpapi.Timestamp  `json:"created_at"`
	CompletedAt *httpapi.Timestamp `json:"completed_at"`
}

func jobPath(id int64) string { return fmt.Sprintf("%s/jobs/%d", httpapi.Prefix, id) }

func toResponse(img Image) imageResponse {
	out := imageResponse{
		ID: img.ID, Filename: img.Filename, ContentType: img.ContentType, Bytes: img.Size,
		Status: img.Status, Sizes: img.Sizes, Variants: make([]variantResponse, len(img.Variants)),
		JobID: img.JobID, Job: jobPath(img.JobID), CreatedAt: httpapi.Timestamp(img.CreatedAt),
	}
	if img.Width > 0 && img.Height > 0 {
		w, h := img.Width, img.Height
		out.Width, out.Height = &w, &h
	}
	if img.Status == StatusFailed {
		e := img.Error
		out.Error = &e
	}
	if img.BlobID != "" {
		o := OriginalPath(img.ID)
		out.Original = &o
	}
	if !img.CompletedAt.IsZero() {
		c := httpapi.Timestamp(img.CompletedAt)
		out.CompletedAt = &c
	}
	for i, v := range img.Variants {
		out.Variants[i] = variantResponse{Size: v.Size, Width: v.Width, Height: v.Height, Bytes: v.Bytes,
			ContentType: v.ContentType, Download: VariantPath(img.ID, v.Size)}
	}
	return out
}

// listResponse is a page of images, newest first. Next is the cursor of
// the following page (pass it as ?after=), or null on the last page.
type listResponse struct {
	Images []imageResponse `json:"images"`
	Next   *string         `json:"next"`
}

// upload reads a multipart/form-data body: the file in field "file",
// optionally the sizes in field "sizes", in either order. The file is
// streamed into the blob store as it arrives; should anything after it
// be wrong, it is deleted again.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) {
	// The route gives the request Options.UploadTimeout to arrive; give
	// the answer as long, so that a slow upload is not cut off by the
	// server's write timeout just as it is answered. (Not every writer
	// can; the server's deadline then applies.)
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.s.opts.UploadTimeout))
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		httpapi.WriteError(w, r, httpapi.Errorf(httpapi.CodeUnsupportedMedia,
			"the request body must be multipart/form-data with the image in a field named file"))
		return
	}
	if params["boundary"] == "" {
		httpapi.WriteError(w, r, httpapi.Errorf(httpapi.CodeInvalid, "the multipart/form-data Content-Type has no boundary parameter"))
		return
	}
	limit := h.BodyLimit()
	if r.ContentLength > limit {
		httpapi.WriteError(w, r, tooLarge(h.s.opts.MaxUploadBytes))
		return
	}
	mr := multipart.NewReader(http.MaxBytesReader(w, r.Body, limit), params["boundary"])
	var (
		stored   bool
		original blobs.Blob
		filename string
		sizes    []int
		sizesSet bool
	)
	fail := func(err error) {
		if stored {
			h.s.discard(r.Context(), original.ID)
		}
		httpapi.WriteError(w, r, err)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(h.bodyError(err))
			return
		}
		switch name := part.FormName(); name {
		case "file":
			if stored {
				fail(fieldError(httpapi.CodeInvalid, "file", "is given twice; send one image per request"))
				return
			}
			if fn := part.FileName(); fn != "" {
				filename = blobs.SanitizeFilename(fn)
			}
			pr := &trackedReader{r: part}
			original, err = h.s.storeOriginal(r.Context(), pr)
			if err != nil {
				fail(h.uploadError(pr, err))
				return
			}
			stored = true
		case "sizes":
			if sizesSet {
				fail(fieldError(httpapi.CodeInvalid, "sizes", "is given twice"))
				return
			}
			b, err := io.ReadAll(io.LimitReader(part, maxSizesText+1))
			if err != nil {
				fail(h.bodyError(err))
				return
			}
			if sizes, err = ParseSizes(string(b)); err != nil {
				fail(httpapi.Invalid([]httpapi.FieldError{{Field: "sizes", Message: err.Error()}}))
				return
			}
			sizesSet = true
		case "":
			fail(httpapi.Errorf(httpapi.CodeInvalid, "a part of the multipart body has no form field name"))
			return
		default:
			fail(fieldError(httpapi.CodeInvalid, name, "unknown field (want file and, optionally, sizes)"))
			return
		}
		_ = part.Close()
	}
	if !stored {
		httpapi.WriteError(w, r, fieldError(httpapi.CodeInvalid, "file", "is required: the image to upload, as a multipart/form-data file field named file"))
		return
	}
	img, err := h.s.create(r.Context(), original, filename, sizes)
	if err != nil {
		fail(apiError(err, 0))
		return
	}
	w.Header().Set("Location", jobPath(img.JobID))
	httpapi.WriteJSON(w, r, http.StatusAccepted, toResponse(img))
}

// fieldError is a problem naming one field of the form.
func fieldError(code httpapi.Code, field, msg string) error {
	return &httpapi.Error{Code: code, Message: fmt.Sprintf("field %q %s", field, msg), Fields: []httpapi.FieldError{{Field: field, Message: msg}}}
}

func tooLarge(max int64) error {
	return fieldError(httpapi.CodeTooLarge, "file", fmt.Sprintf("is larger than the upload limit of %d bytes", max))
}

// bodyError is the problem for a failure to read the request body: 413
// past a limit (the upload's, or the API's if lower), 400 otherwise.
func (h *Handler) bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		if mbe.Limit < h.BodyLimit() {
			return &httpapi.Error{Code: httpapi.CodeTooLarge, Message: fmt.Sprintf("the request body is larger than the server's limit of %d bytes", mbe.Limit), Err: err}
		}
		return tooLarge(h.s.opts.MaxUploadBytes)
	}
	return &httpapi.Error{Code: httpapi.CodeInvalid, Message: "the multipart/form-data body is malformed or truncated", Err: err}
}

// uploadError is the problem for a failure to store the file read from
// part: the body's fault when reading the part failed, the server's
// otherwise.
func (h *Handler) uploadError(part *trackedReader, err error) error {
	switch {
	case errors.Is(err, ErrTooLarge):
		return tooLarge(h.s.opts.MaxUploadBytes)
	case errors.Is(err, ErrEmpty):
		return fieldError(httpapi.CodeInvalid, "file", "is empty")
	case part.err != nil:
		return h.bodyError(part.err)
	}
	return apiError(err, 0)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	st, err := h.s.Get(r.Context(), id)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, id))
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, toResponse(st.Image))
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	p, err := parseList(r.URL.RawQuery)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	imgs, err := h.s.List(r.Context(), p)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, 0))
		return
	}
	out := listResponse{Images: make([]imageResponse, len(imgs))}
	for i, img := range imgs {
		out.Images[i] = toResponse(img)
	}
	if len(imgs) == p.Limit {
		next := strconv.FormatInt(imgs[len(imgs)-1].ID, 10)
		out.Next = &next
	}
	httpapi.WriteJSON(w, r, http.StatusOK, out)
}

// parseList parses the query of GET /api/v1/images: limit and after.
// Unknown parameters are refused so that a typo does not go unnoticed.
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
	var unknown []httpapi.FieldError
	for _, name := range names {
		vals := q[name]
		if name != "limit" && name != "after" {
			unknown = append(unknown, httpapi.FieldError{Field: name, Message: "unknown parameter"})
			continue
		}
		if len(vals) != 1 {
			return p, httpapi.ParamError(name, "must be given once")
		}
		switch v := vals[0]; name {
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
		quoted := make([]string, len(unknown))
		for i, f := range unknown {
			quoted[i] = strconv.Quote(f.Field)
		}
		return p, &httpapi.Error{Code: httpapi.CodeInvalid,
			Message: fmt.Sprintf("unknown query parameter %s (want limit or after)", strings.Join(quoted, ", ")), Fields: unknown}
	}
	return p, nil
}

func (h *Handler) original(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	img, err := h.s.Original(r.Context(), id)
	if err != nil {
		httpapi.WriteError(w, r, apiError(err, id))
		return
	}
	name := img.Filename
	if name == "" {
		name = fmt.Sprintf("image-%d%s", img.ID, extension(img.ContentType))
	}
	blobs.Serve(w, r, h.s.blobs, img.BlobID, name)
}

func (h *Handler) variant(w http.ResponseWriter, r *http.Request) {
	id, err := httpapi.PathID(r, "id")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	n, err := httpapi.PathID(r, "size")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	size := int(min(n, MaxSize+1)) // any size above MaxSize is one no image has
	img, v, err := h.s.Variant(r.Context(), id, size)
	if err != nil {
		httpapi.WriteError(w, r, variantError(err, id, img, n))
		return
	}
	blobs.Serve(w, r, h.s.blobs, v.BlobID, fmt.Sprintf("image-%d-%d%s", img.ID, v.Size, extension(v.ContentType)))
}

// variantError says why a variant cannot be downloaded.
func variantError(err error, id int64, img Image, size int64) error {
	switch {
	case errors.Is(err, ErrNoSuchSize):
		return &httpapi.Error{Code: httpapi.CodeNotFound, Err: err,
			Message: fmt.Sprintf("image %d has no variant of size %d; its sizes are %s", img.ID, size, strings.ReplaceAll(formatSizes(img.Sizes), ",", ", "))}
	case errors.Is(err, ErrNotReady):
		msg := fmt.Sprintf("the size %d variant of image %d is not ready yet; poll the image until its status is done", size, img.ID)
		if img.Status == StatusFailed {
			msg = fmt.Sprintf("image %d failed, so it has no variants: %s", img.ID, img.Error)
		}
		// As for a report or a video thumbnail not made yet: the image
		// exists, its variant does not, yet.
		return &httpapi.Error{Code: httpapi.CodeConflict, Message: msg, Err: err}
	}
	return apiError(err, id)
}

// extension returns the file extension of an image content type.
func extension(contentType string) string {
	switch contentType {
	case "image/jpeg":
		return ".jpg"
	case "image/png":
		return ".png"
	case "image/gif":
		return ".gif"
	}
	return ""
}

// apiError maps a service error to what the client sees; id is the image
// the request is about (0 for none).
func apiError(err error, id int64) error {
	var he *httpapi.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.Is(err, ErrNotFound):
		return &httpapi.Error{Code: httpapi.CodeNotFound, Message: fmt.Sprintf("image %d does not exist", id), Err: err}
	case errors.Is(err, ErrGone):
		return &httpapi.Error{Code: httpapi.CodeNotFound, Message: fmt.Sprintf("the original file of image %d no longer exists", id), Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &httpapi.Error{Code: httpapi.CodeUnavailable, Message: "the request did not finish in time; try again", Err: err}
	case errors.Is(err, queue.ErrUnknownKind), errors.Is(err, queue.ErrInvalid):
		// The engine was set up without RegisterKinds: a deployment
		// fault, not bad input.
		return &httpapi.Error{Code: httpapi.CodeInternal, Err: err}
	}
	return &httpapi.Error{Code: httpapi.CodeInternal, Err: err}
}
