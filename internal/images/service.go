// Package images stores uploaded images and makes their thumbnails in
// the background. POST /api/v1/images streams the upload into the blob
// store, then stores the image row and enqueues an image.thumbnail job in
// one transaction. The job, on queue "images", reads the image's header
// first and refuses for good anything that is not PNG, JPEG or GIF or
// that declares too many pixels (a decompression bomb fails before it
// costs memory); then it decodes the image once, applies its EXIF
// orientation, writes one variant per configured size (longest edge =
// size, never scaled up) as JPEG (for JPEG input) or PNG, and marks the
// image done. GET /api/v1/images/{id} shows the image and its variants;
// the original and each variant download from the blob store.
package images

import (
	"bufio"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/enqueue"
	"github.com/kilnhq/kiln/queue"
)

// KindThumbnail is the job kind that makes an image's variants.
const KindThumbnail = "image.thumbnail"

// QueueName is the queue image.thumbnail jobs run on. Their work is
// CPU-bound: its concurrency (queue.QueueConfig.MaxWorkers) bounds how
// many images a process decodes at once, and so its memory.
const QueueName = "images"

// Defaults and bounds of [Options].
const (
	// DefaultMaxUploadBytes is the largest upload accepted by default.
	DefaultMaxUploadBytes = 20 << 20
	// DefaultMaxPixels is the most pixels an image may declare by default
	// (50 megapixels: 200 MB once decoded to RGBA).
	DefaultMaxPixels = 50_000_000
	// DefaultMaxDimension is the longest side an image may declare by
	// default.
	DefaultMaxDimension = 20_000
	// DefaultJobTimeout bounds one image.thumbnail attempt by default.
	DefaultJobTimeout = 5 * time.Minute
	// DefaultUploadTimeout is how long an upload may take to arrive by
	// default: 20 MiB at about 70 KB/s.
	DefaultUploadTimeout = 5 * time.Minute
	// MinSize and MaxSize bound a variant size (its longest edge).
	MinSize = 16
	MaxSize = 8192
	// MaxSizes is the most variant sizes an image may have.
	MaxSizes = 8
)

// DefaultSizes are the variant sizes (longest edge, in pixels) made when
// neither the options nor the upload name any.
var DefaultSizes = []int{128, 512, 1024}

// Options configure the images service and the image.thumbnail kind. Zero
// fields take the defaults.
type Options struct {
	// Sizes are the variant sizes made for an upload that names none
	// (default [DefaultSizes]); each in MinSize..MaxSize, at most
	// MaxSizes of them.
	Sizes []int
	// MaxUploadBytes caps an uploaded file (default
	// [DefaultMaxUploadBytes]); a larger one is answered 413. The upload
	// route's body limit follows it ([Handler.BodyLimit]).
	MaxUploadBytes int64
	// UploadTimeout is how long an upload request may take to arrive and
	// be answered (default [DefaultUploadTimeout]), instead of the
	// server's read and write timeouts.
	UploadTimeout time.Duration
	// MaxPixels caps width × height as the image's header declares them
	// (default [DefaultMaxPixels]); MaxDimension caps either side
	// (default [DefaultMaxDimension]). Larger images fail their job
	// permanently before anything is decoded.
	MaxPixels    int64
	MaxDimension int
	// JobTimeout bounds one image.thumbnail attempt (default
	// [DefaultJobTimeout]).
	JobTimeout time.Duration
	// MaxDecoding is how many images this process decodes and resizes at
	// once, whatever the number of image.thumbnail jobs running (default
	// [DefaultMaxDecoding], half the CPUs): the others wait their turn
	// holding no image in memory. On Linux the work runs on threads of
	// nice 10, so that the API keeps its CPUs.
	MaxDecoding int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Metrics, if set, gets kiln_image_thumbnail_seconds, how long
	// image.thumbnail attempts take, by outcome.
	Metrics prometheus.Registerer
}

// Validate checks o as given (zero fields stand for their defaults).
func (o Options) Validate() error {
	_, err := o.withDefaults()
	return err
}

// withDefaults returns o with its zero fields defaulted and its sizes
// sorted and de-duplicated, or an error naming what is wrong.
func (o Options) withDefaults() (Options, error) {
	if o.Sizes == nil {
		o.Sizes = DefaultSizes
	}
	s, err := normalizeSizes(o.Sizes)
	if err != nil {
		return Options{}, fmt.Errorf("images: Options.Sizes: %w", err)
	}
	o.Sizes = s
	switch {
	case o.MaxUploadBytes < 0:
		return Options{}, fmt.Errorf("images: Options.MaxUploadBytes must not be negative, got %d", o.MaxUploadBytes)
	case o.MaxPixels < 0:
		return Options{}, fmt.Errorf("images: Options.MaxPixels must not be negative, got %d", o.MaxPixels)
	case o.MaxDimension < 0:
		return Options{}, fmt.Errorf("images: Options.MaxDimension must not be negative, got %d", o.MaxDimension)
	case o.JobTimeout < 0:
		return Options{}, fmt.Errorf("images: Options.JobTimeout must not be negative, got %s", o.JobTimeout)
	case o.MaxDecoding < 0:
		return Options{}, fmt.Errorf("images: Options.MaxDecoding must not be negative, got %d", o.MaxDecoding)
	case o.UploadTimeout < 0:
		return Options{}, fmt.Errorf("images: Options.UploadTimeout must not be negative, got %s", o.UploadTimeout)
	}
	o.MaxUploadBytes = cmp.Or(o.MaxUploadBytes, DefaultMaxUploadBytes)
	o.MaxPixels = cmp.Or(o.MaxPixels, DefaultMaxPixels)
	o.MaxDimension = cmp.Or(o.MaxDimension, DefaultMaxDimension)
	o.JobTimeout = cmp.Or(o.JobTimeout, DefaultJobTimeout)
	o.UploadTimeout = cmp.Or(o.UploadTimeout, DefaultUploadTimeout)
	if o.MaxDecoding == 0 {
		o.MaxDecoding = DefaultMaxDecoding()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

func (o Options) limits() limits {
	return limits{maxPixels: o.MaxPixels, maxDimension: o.MaxDimension}
}

// maxSizesText bounds the sizes field of an upload: eight sizes of four
// digits with separators and some spaces fit many times over.
const maxSizesText = 256

// ParseSizes parses a comma-separated list of variant sizes such as
// "128, 512,1024": decimal integers in MinSize..MaxSize, at most
// MaxSizes, spaces around each allowed. It returns them sorted, without
// duplicates.
func ParseSizes(s string) ([]int, error) {
	if len(s) > maxSizesText {
		return nil, fmt.Errorf("must be at most %d characters", maxSizesText)
	}
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("must list at least one size, such as 128,512,1024")
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxSizes {
		return nil, fmt.Errorf("must list at most %d sizes, got %d", MaxSizes, len(parts))
	}
	out := make([]int, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
			return nil, fmt.Errorf("size %d (%q) must be a whole number of pixels from %d to %d", i+1, p, MinSize, MaxSize)
		}
		n, _ := strconv.Atoi(p) // at most 5 digits: cannot fail
		out = append(out, n)
	}
	return normalizeSizes(out)
}

// normalizeSizes checks sizes and returns them sorted, without
// duplicates.
func normalizeSizes(sizes []int) ([]int, error) {
	if len(sizes) == 0 {
		return nil, errors.New("must list at least one size")
	}
	if len(sizes) > MaxSizes {
		return nil, fmt.Errorf("must list at most %d sizes, got %d", MaxSizes, len(sizes))
	}
	for _, n := range sizes {
		if n < MinSize || n > MaxSize {
			return nil, fmt.Errorf("size %d is out of range: each must be from %d to %d pixels", n, MinSize, MaxSize)
		}
	}
	out := slices.Clone(sizes)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// formatSizes is the stored form of sizes: "128,512,1024".
func formatSizes(sizes []int) string {
	parts := make([]string, len(sizes))
	for i, n := range sizes {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// Errors of the service; test for them with errors.Is.
var (
	// ErrNotFound means no image has the id.
	ErrNotFound = apperr.New(apperr.CodeNotFound, "image not found")
	// ErrNoSuchSize means the image has no variant of the size asked for.
	ErrNoSuchSize = apperr.New(apperr.CodeNotFound, "the image has no variant of this size")
	// ErrNotReady means the variant has not been made yet, or the image
	// failed. As for a report or a video thumbnail not made yet, the
	// image exists and its variant does not, yet: a conflict.
	ErrNotReady = apperr.New(apperr.CodeConflict, "the variant is not ready")
	// ErrGone means the image's original file has been deleted.
	ErrGone = apperr.New(apperr.CodeNotFound, "the original file no longer exists")
	// ErrTooLarge means the upload passed Options.MaxUploadBytes.
	ErrTooLarge = apperr.Field(apperr.CodeTooLarge, "file", "is larger than the upload limit")
	// ErrEmpty means the upload had no content.
	ErrEmpty = apperr.Field(apperr.CodeInvalid, "file", "is empty")
)

// tooLarge is [ErrTooLarge] naming the limit of max bytes.
func tooLarge(max int64) error {
	return &apperr.Error{Code: apperr.CodeTooLarge, Err: ErrTooLarge,
		Message: fmt.Sprintf("field %q is larger than the upload limit of %d bytes", "file", max),
		Fields:  []apperr.FieldError{{Field: "file", Message: fmt.Sprintf("is larger than the upload limit of %d bytes", max)}}}
}

// notFound is the error for image id, which does not exist.
func notFound(id int64) error { return apperr.Wrapf(ErrNotFound, "image %d does not exist", id) }

// The statuses of an image.
const (
	StatusPending = "pending"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

// Image is a stored image.
type Image struct {
	ID int64
	// Filename is the uploaded file's name, sanitised (may be empty).
	Filename string
	// ContentType is the original's type as sniffed from its content:
	// image/png, image/jpeg, image/gif, or application/octet-stream.
	ContentType string
	// Size is the original's length in bytes.
	Size int64
	// BlobID is the original's blob; empty once it has been deleted.
	BlobID string
	// Sizes are the variant sizes the image gets, sorted.
	Sizes []int
	// JobID is the image.thumbnail job.
	JobID  int64
	Status string
	// Error says why the image failed.
	Error string
	// Width and Height are as displayed (after EXIF orientation), zero
	// until the job has read the header.
	Width, Height int
	CreatedAt     time.Time
	// CompletedAt is when the image became done or failed.
	CompletedAt time.Time
	// Variants are the ready variants, by size.
	Variants []Variant
}

// Variant is one ready variant of an image.
type Variant struct {
	Size          int
	BlobID        string
	ContentType   string
	Width, Height int
	Bytes         int64
}

// Jobs is what the service needs of the job engine: enqueueing its jobs
// and reading them back. *queue.Client satisfies it.
type Jobs = enqueue.Jobs

// Service stores images and reads them back.
type Service struct {
	db    *database.DB
	st    *store
	jobs  Jobs
	blobs *blobs.Store
	opts  Options
}

// NewService returns the service of the images in db, which keeps their
// files in bs and enqueues their image.thumbnail jobs with jobs; it
// fails on invalid opts.
func NewService(db *database.DB, jobs Jobs, bs *blobs.Store, opts Options) (*Service, error) {
	if db == nil || jobs == nil || bs == nil {
		return nil, errors.New("images: NewService needs a database, a job engine and a blob store")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Service{db: db, st: newStore(db), jobs: jobs, blobs: bs, opts: o}, nil
}

// Options returns the service's options, defaults filled in.
func (s *Service) Options() Options { return s.opts }

// Blobs returns the store the files are kept in.
func (s *Service) Blobs() *blobs.Store { return s.blobs }

// Original is an uploaded file stored in the blob store that is not an
// image yet: [Service.Create] makes it one, [Service.Discard] deletes it.
type Original struct {
	blob blobs.Blob
}

// StoreOriginal streams r, the file of an upload, into a new blob typed
// by its first bytes. Its content is not checked for being an image here
// (the job does that). Errors: [ErrTooLarge] past
// [Options].MaxUploadBytes, [ErrEmpty], or a failure to read r or to
// store.
func (s *Service) StoreOriginal(ctx context.Context, r io.Reader) (Original, error) {
	br := bufio.NewReaderSize(r, 512)
	head, err := br.Peek(512)
	if len(head) == 0 {
		if err == io.EOF {
			return Original{}, ErrEmpty
		}
		return Original{}, fmt.Errorf("images: read upload: %w", err)
	}
	b, err := s.blobs.PutLimit(ctx, sniffContentType(head), br, s.opts.MaxUploadBytes)
	if errors.Is(err, blobs.ErrTooLarge) {
		return Original{}, tooLarge(s.opts.MaxUploadBytes)
	}
	if err != nil {
		return Original{}, fmt.Errorf("images: store upload: %w", err)
	}
	return Original{blob: b}, nil
}

// Discard deletes o, the original of an upload that did not become an
// image; a failure only leaves a file behind, so it is not reported.
func (s *Service) Discard(ctx context.Context, o Original) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = s.blobs.Delete(ctx, o.blob.ID)
}

// thumbnailArgs are the arguments of an image.thumbnail job.
type thumbnailArgs struct {
	ImageID int64 `json:"image_id"`
}

// Validate checks the image id.
func (a *thumbnailArgs) Validate() error { return enqueue.ID("image_id", a.ImageID) }

// Create makes o, named filename, an image with the given variant
// sizes (nil for the default ones; see [ParseSizes]): it stores the
// image and enqueues its image.thumbnail job in one transaction. Should
// that fail, o is discarded. A repeat of a keyed request whose image was
// made gets that image, and o, stored again, is discarded.
func (s *Service) Create(ctx context.Context, o Original, filename string, sizes []int) (Image, error) {
	if sizes == nil {
		sizes = s.opts.Sizes
	}
	b := o.blob
	img := Image{
		Filename: filename, ContentType: b.ContentType, Size: b.Size, BlobID: b.ID,
		Sizes: sizes, Status: StatusPending, CreatedAt: database.StoredTime(s.opts.Now()),
	}
	img, err := database.Once(ctx, s.db, func(tx *sql.Tx) (Image, error) {
		img := img
		id, err := s.st.insert(ctx, tx, img)
		if err != nil {
			return Image{}, err
		}
		jobID, err := enqueue.InTx(ctx, s.jobs, tx, KindThumbnail, thumbnailArgs{ImageID: id})
		if err != nil {
			return Image{}, fmt.Errorf("image %d: %w", id, err)
		}
		img.ID, img.JobID = id, jobID
		return img, s.st.setJob(ctx, tx, id, jobID)
	})
	if err != nil || img.BlobID != b.ID {
		s.Discard(ctx, o)
	}
	if err != nil {
		return Image{}, fmt.Errorf("images: create: %w", err)
	}
	return img, nil
}

// Status is an image with its job. Job is nil when the job no longer
// exists (finished jobs are pruned; images stay).
type Status = enqueue.Tracked[Image]

// Get returns the image with the id, its ready variants and its job
// ([ErrNotFound] if there is no such image). An image still pending
// whose job has failed or been cancelled is returned as failed, with the
// job's last error, and so is one whose job no longer exists.
func (s *Service) Get(ctx context.Context, id int64) (Status, error) {
	img, err := s.st.get(ctx, s.db.R, id)
	if err != nil {
		return Status{}, err
	}
	if img.Variants, err = s.st.variants(ctx, s.db.R, id); err != nil {
		return Status{}, err
	}
	st, err := enqueue.Track(ctx, s.jobs, img, img.JobID)
	if err != nil {
		return Status{}, fmt.Errorf("images: image %d: %w", id, err)
	}
	if img, j := &st.Record, st.Job; img.Status == StatusPending {
		switch {
		case j == nil:
			// Only finished jobs are pruned, and one that completed
			// would have marked the image done.
			img.Status, img.Error = StatusFailed, "the thumbnail job no longer exists"
		case j.State == queue.StateFailed:
			img.Status, img.Error = StatusFailed, "the thumbnail job failed"
			if n := len(j.Errors); n > 0 {
				img.Error += ": " + j.Errors[n-1].Error
			}
		case j.State == queue.StateCancelled:
			img.Status, img.Error = StatusFailed, "the thumbnail job was cancelled"
		}
	}
	return st, nil
}

// ListParams select a page of images, newest first.
type ListParams struct {
	// Limit is the page size (1..1000).
	Limit int
	// AfterID, if set, lists images with smaller ids (the next page).
	AfterID int64
}

// List returns a page of images, newest first, with their ready
// variants. Their status is as stored: a pending image whose job failed
// shows as failed only through [Service.Get].
func (s *Service) List(ctx context.Context, p ListParams) ([]Image, error) {
	imgs, err := s.st.list(ctx, p)
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return imgs, nil
	}
	vs, err := s.st.variantsOf(ctx, imgs[len(imgs)-1].ID, imgs[0].ID)
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]int, len(imgs))
	for i, img := range imgs {
		byID[img.ID] = i
	}
	for _, v := range vs {
		if i, ok := byID[v.imageID]; ok {
			imgs[i].Variants = append(imgs[i].Variants, v.Variant)
		}
	}
	return imgs, nil
}

// Original returns the image with the id if its original file still
// exists ([ErrNotFound], [ErrGone]).
func (s *Service) Original(ctx context.Context, id int64) (Image, error) {
	img, err := s.st.get(ctx, s.db.R, id)
	if err != nil {
		return Image{}, err
	}
	if img.BlobID == "" {
		return Image{}, apperr.Wrapf(ErrGone, "the original file of image %d no longer exists", id)
	}
	return img, nil
}

// Variant returns image id's variant of the given size: [ErrNotFound]
// for an unknown image, [ErrNoSuchSize] for a size the image does not
// get, [ErrNotReady] for one not made yet or an image that failed.
func (s *Service) Variant(ctx context.Context, id, size int64) (Image, Variant, error) {
	img, err := s.st.get(ctx, s.db.R, id)
	if err != nil {
		return Image{}, Variant{}, err
	}
	if !slices.Contains(img.Sizes, int(min(size, MaxSize+1))) {
		return img, Variant{}, apperr.Wrapf(ErrNoSuchSize, "image %d has no variant of size %d; its sizes are %s",
			id, size, strings.ReplaceAll(formatSizes(img.Sizes), ",", ", "))
	}
	v, err := s.st.variant(ctx, id, int(size))
	if errors.Is(err, ErrNotReady) {
		msg := fmt.Sprintf("the size %d variant of image %d is not ready yet; poll the image until its status is done", size, id)
		if img.Status == StatusFailed {
			msg = fmt.Sprintf("image %d failed, so it has no variants: %s", id, img.Error)
		}
		return img, Variant{}, apperr.Wrapf(err, "%s", msg)
	}
	if err != nil {
		return img, Variant{}, err
	}
	return img, v, nil
}
