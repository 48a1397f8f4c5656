// Package videos takes thumbnails of uploaded videos with ffmpeg.
//
// POST /api/v1/videos stores the upload as a blob and, in one
// transaction with the video's row, enqueues a video.thumbnail job. The
// job copies the video to a temporary file (ffmpeg needs to seek), runs
// ffmpeg in a subprocess bound to the job's context (so a timeout or a
// cancel kills it), and stores the JPEG frame as a blob that
// GET /api/v1/videos/{id}/thumbnail serves.
//
// When ffmpeg is not installed the kind is registered as unavailable:
// enqueueing it is refused with a clear error and GET /api/v1/kinds says
// why. Nothing pretends to have made a thumbnail.
package videos

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/enqueue"
	"github.com/kilnhq/kiln/queue"
)

// KindThumbnail is the job kind that takes a video's thumbnail.
const KindThumbnail = "video.thumbnail"

// Queue is the queue of video.thumbnail jobs: ffmpeg is CPU-bound, so it
// runs with the concurrency of its own queue, apart from the other work.
const Queue = "media"

// Limits of a thumbnail request.
const (
	DefaultWidth = 320
	MinWidth     = 16
	MaxWidth     = 4096
	// MaxAtMS is the latest frame one can ask for: 24 hours in.
	MaxAtMS = 24 * 3600 * 1000
	// DefaultMaxUpload is the default upload limit, 512 MiB.
	DefaultMaxUpload = 512 << 20
)

// Errors of the service; test for them with errors.Is.
var (
	// ErrNotFound means no video has the id.
	ErrNotFound = apperr.New(apperr.CodeNotFound, "no video has this id")
	// ErrNotReady means the video's thumbnail is not made (yet).
	ErrNotReady = apperr.New(apperr.CodeConflict, "the thumbnail is not made (yet); poll the video until its status is done")
	// ErrEmpty means an upload had no content.
	ErrEmpty = apperr.New(apperr.CodeInvalid, "the body is empty; send the video as the request body")
	// ErrTooLarge means an upload passed [Options].MaxUploadBytes.
	ErrTooLarge = apperr.New(apperr.CodeTooLarge, "the video is over the upload limit")
)

// Jobs is what the service needs of the job engine: enqueueing its jobs,
// checking that it can, and reading them back. *queue.Client satisfies
// it.
type Jobs interface {
	enqueue.Jobs
	ValidateInsert(p queue.InsertParams) error
}

var _ Jobs = (*queue.Client)(nil)

// Video is a stored video and its thumbnail, once made.
type Video struct {
	ID       int64
	BlobID   string
	Filename string
	// AtMS is the time of the frame to take, in milliseconds.
	AtMS int64
	// Width is the thumbnail's requested width; its height keeps the
	// video's aspect ratio.
	Width int
	JobID int64
	// ThumbnailBlobID is empty until the thumbnail is made.
	ThumbnailBlobID string
	ThumbnailWidth  int
	ThumbnailHeight int
	// Error says why the thumbnail could not be made, for good.
	Error       string
	CreatedAt   time.Time
	CompletedAt time.Time
}

// Done reports whether the thumbnail is made.
func (v Video) Done() bool { return v.ThumbnailBlobID != "" }

// Service stores videos and reads them back.
type Service struct {
	db        *database.DB
	st        *store
	jobs      Jobs
	blobs     *blobs.Store
	maxUpload int64
	now       func() time.Time
}

// NewService returns the service of the videos in db, which keeps their
// files in bs and enqueues their video.thumbnail jobs with jobs. Of o it
// uses MaxUploadBytes and Now.
func NewService(db *database.DB, jobs Jobs, bs *blobs.Store, o Options) (*Service, error) {
	if db == nil || jobs == nil || bs == nil {
		return nil, errors.New("videos: NewService needs a database, a job engine and a blob store")
	}
	if o.MaxUploadBytes < 0 {
		return nil, fmt.Errorf("videos: Options.MaxUploadBytes must not be negative, got %d", o.MaxUploadBytes)
	}
	if o.MaxUploadBytes == 0 {
		o.MaxUploadBytes = DefaultMaxUpload
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{db: db, st: newStore(db), jobs: jobs, blobs: bs, maxUpload: o.MaxUploadBytes, now: o.Now}, nil
}

// MaxUploadBytes is the largest video [Service.Upload] takes.
func (s *Service) MaxUploadBytes() int64 { return s.maxUpload }

// Blobs returns the store the files are kept in.
func (s *Service) Blobs() *blobs.Store { return s.blobs }

// thumbnailArgs are the arguments of a video.thumbnail job.
type thumbnailArgs struct {
	VideoID int64 `json:"video_id"`
}

// Validate checks the video id.
func (a *thumbnailArgs) Validate() error { return enqueue.ID("video_id", a.VideoID) }

// Available returns nil if video.thumbnail jobs can be enqueued here,
// else the reason (wrapping queue.ErrKindUnavailable when ffmpeg is
// missing).
func (s *Service) Available() error {
	return s.jobs.ValidateInsert(queue.InsertParams{Kind: KindThumbnail, Args: json.RawMessage(`{"video_id":1}`)})
}

// Upload stores body, of the given content type and at most
// [Service.MaxUploadBytes], as a new blob and creates the video on it
// ([Service.Create]). A repeat of a keyed request whose video was created
// gets that video; the body is not stored again. Errors: [ErrTooLarge],
// [ErrEmpty] (wrapped), and those of Create.
func (s *Service) Upload(ctx context.Context, contentType string, body io.Reader, filename string, atMS int64, width int) (Video, error) {
	if v, ok, err := database.Recorded[Video](ctx); ok || err != nil {
		return v, err
	}
	b, err := s.blobs.PutLimit(ctx, contentType, body, s.maxUpload)
	if errors.Is(err, blobs.ErrTooLarge) {
		return Video{}, apperr.Wrapf(fmt.Errorf("%w: %w", ErrTooLarge, err), "the video is over the upload limit of %d bytes", s.maxUpload)
	}
	if err != nil {
		return Video{}, fmt.Errorf("store the video: %w", err)
	}
	if b.Size == 0 {
		if err := s.blobs.Delete(context.WithoutCancel(ctx), b.ID); err != nil {
			return Video{}, errors.Join(ErrEmpty, fmt.Errorf("delete the empty upload: %w", err))
		}
		return Video{}, ErrEmpty
	}
	return s.Create(ctx, b, filename, atMS, width)
}

// Create records the video whose content is the complete blob b and
// enqueues its thumbnail job, in one transaction. If that fails, the
// blob is deleted.
func (s *Service) Create(ctx context.Context, b blobs.Blob, filename string, atMS int64, width int) (Video, error) {
	v := Video{BlobID: b.ID, Filename: filename, AtMS: atMS, Width: width, CreatedAt: database.StoredTime(s.now())}
	v, err := database.Once(ctx, s.db, func(tx *sql.Tx) (Video, error) {
		v := v
		id, err := s.st.insert(ctx, tx, v)
		if err != nil {
			return Video{}, err
		}
		v.ID = id
		if v.JobID, err = enqueue.InTx(ctx, s.jobs, tx, KindThumbnail, thumbnailArgs{VideoID: id}); err != nil {
			return Video{}, fmt.Errorf("video %d: %w", id, err)
		}
		return v, s.st.setJob(ctx, tx, id, v.JobID)
	})
	if err != nil {
		if derr := s.blobs.Delete(context.WithoutCancel(ctx), b.ID); derr != nil && !errors.Is(derr, blobs.ErrNotFound) {
			err = errors.Join(err, fmt.Errorf("delete the upload: %w", derr))
		}
		return Video{}, fmt.Errorf("create video: %w", err)
	}
	return v, nil
}

// Status is a video with its job. Job is nil when the job no longer
// exists (finished jobs are pruned; videos stay).
type Status = enqueue.Tracked[Video]

// Get returns the video with the id ([ErrNotFound] if none) and its job.
func (s *Service) Get(ctx context.Context, id int64) (Status, error) {
	v, err := s.st.get(ctx, s.db.R, id)
	if err != nil {
		return Status{}, err
	}
	st, err := enqueue.Track(ctx, s.jobs, v, v.JobID)
	if err != nil {
		return Status{}, fmt.Errorf("video %d: %w", id, err)
	}
	return st, nil
}

// Thumbnail returns the video with the id if its thumbnail is made:
// [ErrNotFound] for an unknown video, [ErrNotReady] for one whose
// thumbnail is not made (yet).
func (s *Service) Thumbnail(ctx context.Context, id int64) (Video, error) {
	v, err := s.st.get(ctx, s.db.R, id)
	if err != nil {
		return Video{}, err
	}
	if !v.Done() {
		return Video{}, fmt.Errorf("video %d: %w", id, ErrNotReady)
	}
	return v, nil
}
