package videos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/queue"
)

// Options configure the video.thumbnail kind.
type Options struct {
	// FFmpeg is the ffmpeg program to run; empty means "ffmpeg" looked
	// up on the PATH. When it cannot be found the kind is registered as
	// unavailable.
	FFmpeg string
	// Timeout bounds one attempt, ffmpeg included (default 2m).
	Timeout time.Duration
	// TempDir holds the video while ffmpeg reads it (default os.TempDir).
	TempDir string
	// MaxUploadBytes caps an uploaded video (default
	// [DefaultMaxUpload]); the API answers a larger one 413.
	MaxUploadBytes int64
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultTimeout bounds one video.thumbnail attempt.
const DefaultTimeout = 2 * time.Minute

// ErrNoFFmpeg is the reason video.thumbnail is unavailable.
var ErrNoFFmpeg = errors.New("ffmpeg is not installed: install it (apt install ffmpeg, brew install ffmpeg, apk add ffmpeg) on every machine that runs kiln, or give its path with --ffmpeg")

// FindFFmpeg returns the path of the ffmpeg program name (a path or a
// name looked up on the PATH; empty means "ffmpeg"), or an error wrapping
// [ErrNoFFmpeg].
func FindFFmpeg(name string) (string, error) {
	if name == "" {
		name = "ffmpeg"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w (%v)", ErrNoFFmpeg, err)
	}
	return p, nil
}

// RegisterKinds registers video.thumbnail on w, on its own queue
// ([Queue]). Without ffmpeg the kind is registered as unavailable, so
// that enqueueing it fails with the reason instead of leaving jobs no
// process here can run.
func RegisterKinds(w *queue.Workers, db *database.DB, bs *blobs.Store, o Options) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	path, err := FindFFmpeg(o.FFmpeg)
	t := &thumbnailer{st: newStore(db), blobs: bs, ffmpeg: path, tmp: o.TempDir, now: o.Now, missing: err}
	opts := []queue.KindOption{
		queue.WithQueue(Queue),
		queue.WithTimeout(o.Timeout),
		queue.WithRetry(queue.RetryPolicy{MaxAttempts: 3}),
		queue.WithUnavailable(err),
	}
	w.Handle(KindThumbnail, queue.Typed(t.work), opts...)
}

// thumbnailer runs video.thumbnail jobs.
type thumbnailer struct {
	st      *store
	blobs   *blobs.Store
	ffmpeg  string
	tmp     string
	now     func() time.Time
	missing error
}

// result is a video.thumbnail job's result.
type result struct {
	VideoID   int64  `json:"video_id"`
	Thumbnail string `json:"thumbnail"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Bytes     int64  `json:"bytes"`
}

func (t *thumbnailer) work(ctx context.Context, job *queue.Job, a thumbnailArgs) error {
	if t.missing != nil {
		// Inserted by a process that has ffmpeg; this one has not. A
		// plain error lets a machine that has it take the retry.
		return fmt.Errorf("this process cannot run %s: %w", KindThumbnail, t.missing)
	}
	v, err := t.st.get(ctx, t.st.db.R, a.VideoID)
	if errors.Is(err, ErrNotFound) {
		return queue.Permanent(err)
	}
	if err != nil {
		return err
	}
	if v.Done() {
		// An earlier attempt made it and then lost its lease.
		return job.SetResult(resultOf(v))
	}
	err = t.make(ctx, job, &v)
	// The video shows why it has no thumbnail once no attempt is left.
	if queue.IsPermanent(err) || (err != nil && ctx.Err() == nil && job.Attempt >= job.MaxAttempts) {
		if ferr := t.st.fail(context.WithoutCancel(ctx), v.ID, strings.TrimPrefix(err.Error(), "permanent: "), t.now().UTC()); ferr != nil {
			return errors.Join(err, ferr)
		}
		return err
	}
	if err != nil {
		return err
	}
	return job.SetResult(resultOf(v))
}

func resultOf(v Video) result {
	return result{VideoID: v.ID, Thumbnail: thumbnailPath(v.ID), Width: v.ThumbnailWidth, Height: v.ThumbnailHeight}
}

// make takes v's thumbnail and records it in v and the database.
func (t *thumbnailer) make(ctx context.Context, job *queue.Job, v *Video) error {
	dir, err := os.MkdirTemp(t.tmp, "kiln-video-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "in")
	if err := t.copyOut(ctx, v.BlobID, in); err != nil {
		return err
	}
	_ = job.SetProgress(ctx, 20, "video ready; running ffmpeg")
	out := filepath.Join(dir, "thumbnail.jpg")
	if err := t.run(ctx, in, out, v.AtMS, v.Width); err != nil {
		return err
	}
	_ = job.SetProgress(ctx, 80, "frame taken; storing the thumbnail")
	f, err := os.Open(out)
	if errors.Is(err, fs.ErrNotExist) {
		return queue.Permanent(fmt.Errorf("no frame at %ss: the video is shorter than that, or has no video stream", fmtAt(v.AtMS)))
	}
	if err != nil {
		return fmt.Errorf("open ffmpeg's output: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat ffmpeg's output: %w", err)
	}
	if fi.Size() == 0 {
		return queue.Permanent(fmt.Errorf("no frame at %ss: the video is shorter than that, or has no video stream", fmtAt(v.AtMS)))
	}
	cfg, err := jpeg.DecodeConfig(f)
	if err != nil {
		return queue.Permanent(fmt.Errorf("ffmpeg wrote no JPEG: %v", err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind ffmpeg's output: %w", err)
	}
	b, err := t.blobs.Put(ctx, "image/jpeg", f)
	if err != nil {
		return fmt.Errorf("store the thumbnail: %w", err)
	}
	old, err := t.st.finish(ctx, v.ID, b.ID, cfg.Width, cfg.Height, t.now().UTC())
	if err != nil {
		_ = t.blobs.Delete(context.WithoutCancel(ctx), b.ID)
		return err
	}
	if old != "" && old != b.ID {
		_ = t.blobs.Delete(ctx, old)
	}
	v.ThumbnailBlobID, v.ThumbnailWidth, v.ThumbnailHeight = b.ID, cfg.Width, cfg.Height
	return nil
}

// copyOut streams blob id into the file at path.
func (t *thumbnailer) copyOut(ctx context.Context, id, path string) error {
	_, rc, err := t.blobs.Open(ctx, id)
	if errors.Is(err, blobs.ErrNotFound) {
		return queue.Permanent(fmt.Errorf("the uploaded video is gone: %w", err))
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("temporary file: %w", err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return fmt.Errorf("copy the video out: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the video out: %w", err)
	}
	return nil
}

// stderrLimit caps how much of ffmpeg's error output is kept.
const stderrLimit = 4 << 10

// run has ffmpeg write the frame at atMS of in, scaled to width (never
// up), as a JPEG at out. ffmpeg dies with ctx. A failure ffmpeg reports
// about its input is permanent; one caused by a signal (killed for
// memory, say) is not.
func (t *thumbnailer) run(ctx context.Context, in, out string, atMS int64, width int) error {
	cmd := exec.CommandContext(ctx, t.ffmpeg,
		"-nostdin", "-hide_banner", "-loglevel", "error", "-y",
		"-ss", fmtAt(atMS), "-i", in,
		"-frames:v", "1", "-an",
		"-vf", "scale='min("+strconv.Itoa(width)+",iw)':-2",
		"-f", "image2", "-c:v", "mjpeg", "-q:v", "3",
		out)
	// After the context ends ffmpeg is killed; don't wait long for its
	// pipes either.
	cmd.WaitDelay = 5 * time.Second
	stderr := &limitedBuffer{max: stderrLimit}
	cmd.Stderr = stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		msg = "no output"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return queue.Permanent(fmt.Errorf("ffmpeg could not read the video (exit %d): %s", ee.ExitCode(), lastLine(msg)))
	}
	return fmt.Errorf("ffmpeg: %w: %s", err, lastLine(msg))
}

// fmtAt formats milliseconds as seconds for ffmpeg: 2500 → "2.500".
func fmtAt(ms int64) string { return fmt.Sprintf("%d.%03d", ms/1000, ms%1000) }

// lastLine returns the last non-empty line of s: ffmpeg's conclusion.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }
