package images

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/httpapi"
)

//go:embed openapi.json
var openAPI []byte

// Listing limits.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
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
		{Pattern: "POST " + p, Handler: h.upload, BodyLimit: h.BodyLimit(), ReadTimeout: h.s.Options().UploadTimeout},
		{Pattern: "GET " + p, Handler: h.list},
		{Pattern: "GET " + p + "/{id}", Handler: httpapi.Show(h.s.Get, func(st Status) imageResponse { return toResponse(st.Record) })},
		{Pattern: "GET " + p + "/{id}/original", Handler: blobs.Download(h.s.Blobs(), h.s.Original, originalFile)},
		{Pattern: "GET " + p + "/{id}/variants/{size}", Handler: h.variant},
	}
}

// OpenAPI returns the OpenAPI fragment of the images routes.
func (h *Handler) OpenAPI() []byte { return openAPI }

// BodyLimit is the request body limit of POST /api/v1/images, which its
// route sets instead of the API's: the largest upload
// (Options.MaxUploadBytes) plus room for the multipart framing.
func (h *Handler) BodyLimit() int64 { return h.s.Options().MaxUploadBytes + multipartOverhead }

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

// originalPath is the API path of image id's original file.
func originalPath(id int64) string { return fmt.Sprintf("%s/images/%d/original", httpapi.Prefix, id) }

// variantPath is the API path of image id's variant of the given size.
func variantPath(id int64, size int) string {
	return fmt.Sprintf("%s/images/%d/variants/%d", httpapi.Prefix, id, size)
}

func toResponse(img Image) imageResponse {
	out := imageResponse{
		ID: img.ID, Filename: img.Filename, ContentType: img.ContentType, Bytes: img.Size,
		Status: img.Status, Sizes: img.Sizes, Variants: make([]variantResponse, len(img.Variants)),
		JobID: img.JobID, Job: httpapi.JobPath(img.JobID), CreatedAt: httpapi.Timestamp(img.CreatedAt),
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
		o := originalPath(img.ID)
		out.Original = &o
	}
	if !img.CompletedAt.IsZero() {
		c := httpapi.Timestamp(img.CompletedAt)
		out.CompletedAt = &c
	}
	for i, v := range img.Variants {
		out.Variants[i] = variantResponse{Size: v.Size, Width: v.Width, Height: v.Height, Bytes: v.Bytes,
			ContentType: v.ContentType, Download: variantPath(img.ID, v.Size)}
	}
	return out
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
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.s.Options().UploadTimeout))
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
		httpapi.WriteError(w, r, tooLarge(h.s.Options().MaxUploadBytes))
		return
	}
	mr := multipart.NewReader(http.MaxBytesReader(w, r.Body, limit), params["boundary"])
	var (
		stored   bool
		original Original
		filename string
		sizes    []int
		sizesSet bool
	)
	fail := func(err error) {
		if stored {
			h.s.Discard(r.Context(), original)
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
				fail(apperr.Field(apperr.CodeInvalid, "file", "is given twice; send one image per request"))
				return
			}
			if fn := part.FileName(); fn != "" {
				filename = blobs.SanitizeFilename(fn)
			}
			pr := &trackedReader{r: part}
			original, err = h.s.StoreOriginal(r.Context(), pr)
			if err != nil {
				fail(h.uploadError(pr, err))
				return
			}
			stored = true
		case "sizes":
			if sizesSet {
				fail(apperr.Field(apperr.CodeInvalid, "sizes", "is given twice"))
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
			fail(apperr.Field(apperr.CodeInvalid, name, "unknown field (want file and, optionally, sizes)"))
			return
		}
		_ = part.Close()
	}
	if !stored {
		httpapi.WriteError(w, r, apperr.Field(apperr.CodeInvalid, "file", "is required: the image to upload, as a multipart/form-data file field named file"))
		return
	}
	img, err := h.s.Create(r.Context(), original, filename, sizes)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", httpapi.JobPath(img.JobID))
	httpapi.WriteJSON(w, r, http.StatusAccepted, toResponse(img))
}

// bodyError is the problem for a failure to read the request body: 413
// past a limit (the upload's, or the API's if lower), 400 otherwise.
func (h *Handler) bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		if mbe.Limit < h.BodyLimit() {
			return &httpapi.Error{Code: httpapi.CodeTooLarge, Message: fmt.Sprintf("the request body is larger than the server's limit of %d bytes", mbe.Limit), Err: err}
		}
		return tooLarge(h.s.Options().MaxUploadBytes)
	}
	return &httpapi.Error{Code: httpapi.CodeInvalid, Message: "the multipart/form-data body is malformed or truncated", Err: err}
}

// uploadError is the problem for a failure to store the file read from
// part: the body's fault when reading the part failed, else what the
// service said.
func (h *Handler) uploadError(part *trackedReader, err error) error {
	if part.err != nil && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrEmpty) {
		return h.bodyError(part.err)
	}
	return err
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	p, err := parseList(r.URL.RawQuery)
	var imgs []Image
	if err == nil {
		imgs, err = h.s.List(r.Context(), p)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, httpapi.NewList("images", imgs, p.Limit, toResponse, func(img Image) int64 { return img.ID }))
}

// parseList parses the query of GET /api/v1/images, limit and after, by
// the rules of httpapi.ParseList.
func parseList(rawQuery string) (ListParams, error) {
	page, err := httpapi.ParseList(rawQuery, httpapi.ListSpec{DefaultLimit: defaultListLimit, MaxLimit: maxListLimit})
	return ListParams{Limit: page.Limit, AfterID: page.After}, err
}

// originalFile names the blob of img's upload and its download name.
func originalFile(img Image) (blobID, filename string) {
	name := img.Filename
	if name == "" {
		name = fmt.Sprintf("image-%d%s", img.ID, extension(img.ContentType))
	}
	return img.BlobID, name
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
	img, v, err := h.s.Variant(r.Context(), id, n)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	blobs.Serve(w, r, h.s.Blobs(), v.BlobID, fmt.Sprintf("image-%d-%d%s", img.ID, v.Size, extension(v.ContentType)))
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
