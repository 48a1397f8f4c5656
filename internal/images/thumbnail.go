package images

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/metrics"
	"github.com/kilnhq/kiln/queue"
)

// RegisterKinds registers the image.thumbnail kind on w, on queue
// [QueueName] with opts.JobTimeout: it makes the variants of the image
// named by its arguments ({"image_id":N}), reading the original from and
// writing the variants to bs. It fails on invalid opts.
func RegisterKinds(w *queue.Workers, db *database.DB, bs *blobs.Store, opts Options) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	t := &thumbnailer{st: newStore(db), blobs: bs, opts: o}
	t.seconds = metrics.Register(o.Metrics, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metrics.Namespace,
		Subsystem: "image",
		Name:      "thumbnail_seconds",
		Help:      "How long image.thumbnail attempts take, decoding, resizing and storing every variant, by outcome (done, refused, error).",
		Buckets:   []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"outcome"}))
	registerKinds(w, t)
	return nil
}

func registerKinds(w *queue.Workers, t *thumbnailer) {
	if t.cpu == nil {
		t.cpu = newCPUGate(t.opts.MaxDecoding)
	}
	w.Handle(KindThumbnail, queue.Typed(t.work), queue.WithQueue(QueueName), queue.WithTimeout(t.opts.JobTimeout))
}

// thumbnailer works image.thumbnail jobs.
type thumbnailer struct {
	st    *store
	blobs *blobs.Store
	opts  Options
	cpu   *cpuGate
	// stored, if set, is called after a variant's file is written and
	// before it is marked ready; an error fails the attempt there (tests
	// use it to stop an attempt half-way).
	stored func(size int) error
	// seconds observes each attempt's duration by outcome; nil in tests
	// that build a thumbnailer by hand.
	seconds *prometheus.HistogramVec
}

// result is an image.thumbnail job's result.
type result struct {
	ImageID  int64           `json:"image_id"`
	Width    int             `json:"width"`
	Height   int             `json:"height"`
	Variants []variantResult `json:"variants"`
}

// variantResult describes one variant in a job's result.
type variantResult struct {
	Size     int    `json:"size"`
	Width    int    `json:"width"`
	Height   int    `json:"height"`
	Bytes    int64  `json:"bytes"`
	Download string `json:"download"`
}

func makeResult(id int64, w, h int, vs []Variant) result {
	r := result{ImageID: id, Width: w, Height: h, Variants: make([]variantResult, len(vs))}
	for i, v := range vs {
		r.Variants[i] = variantResult{Size: v.Size, Width: v.Width, Height: v.Height, Bytes: v.Bytes, Download: variantPath(id, v.Size)}
	}
	return r
}

// work makes one image's variants. Content the job refuses (not an
// image, too large, undecodable) marks the image failed with the reason
// and fails the job permanently; anything else (the database, a
// timeout) is retried.
func (t *thumbnailer) work(ctx context.Context, job *queue.Job, args thumbnailArgs) error {
	start := time.Now()
	err := t.run(ctx, job, args.ImageID)
	var rej *rejectError
	refused := errors.As(err, &rej)
	if t.seconds != nil {
		outcome := "done"
		switch {
		case refused:
			outcome = "refused"
		case err != nil:
			outcome = "error"
		}
		t.seconds.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	}
	if !refused {
		return err
	}
	if ferr := t.st.fail(ctx, args.ImageID, rej.msg, t.now()); ferr != nil {
		return fmt.Errorf("%v; recording it failed: %w", rej, ferr)
	}
	job.Logger().Info("image refused", "image_id", args.ImageID, "reason", rej.msg)
	return queue.Permanent(fmt.Errorf("image %d: %w", args.ImageID, err))
}

func (t *thumbnailer) now() time.Time { return database.StoredTime(t.opts.Now()) }

// run makes image id's missing variants and marks it done. Variants an
// earlier attempt finished are kept; files it left unfinished are
// deleted first, so a retry neither duplicates variants nor leaks files.
func (t *thumbnailer) run(ctx context.Context, job *queue.Job, id int64) error {
	img, err := t.st.get(ctx, t.st.db.R, id)
	if errors.Is(err, ErrNotFound) {
		return queue.Permanent(err)
	}
	if err != nil {
		return err
	}
	if img.Status == StatusDone {
		// An earlier attempt finished the image but not the job.
		vs, err := t.st.variants(ctx, t.st.db.R, id)
		if err != nil {
			return err
		}
		if err := job.SetResult(makeResult(id, img.Width, img.Height, vs)); err != nil {
			return err
		}
		return setProgress(ctx, job, 100, fmt.Sprintf("made %d variants of a %dx%d image", len(vs), img.Width, img.Height))
	}
	if img.Status == StatusFailed {
		// The job is being retried by hand.
		if err := t.st.restart(ctx, id); err != nil {
			return err
		}
	}
	if err := t.discardUnfinished(ctx, job, id); err != nil {
		return err
	}
	ready, err := t.st.variants(ctx, t.st.db.R, id)
	if err != nil {
		return err
	}
	if img.BlobID == "" {
		return reject("the original file no longer exists")
	}
	hdr, o, err := t.inspect(ctx, img.BlobID)
	if err != nil {
		return err
	}
	w, h := hdr.width, hdr.height
	if o >= 5 {
		w, h = h, w
	}
	if err := t.st.setDimensions(ctx, id, w, h); err != nil {
		return err
	}
	var todo []int
	for _, s := range img.Sizes {
		if !slices.ContainsFunc(ready, func(v Variant) bool { return v.Size == s }) {
			todo = append(todo, s)
		}
	}
	if len(todo) > 0 {
		if err := t.makeVariants(ctx, job, id, img.BlobID, hdr, o, targets(w, h, todo)); err != nil {
			return err
		}
	}
	vs, err := t.st.variants(ctx, t.st.db.R, id)
	if err != nil {
		return err
	}
	if err := t.st.complete(ctx, id, w, h, t.now()); err != nil {
		return err
	}
	if err := job.SetResult(makeResult(id, w, h, vs)); err != nil {
		return err
	}
	return setProgress(ctx, job, 100, fmt.Sprintf("made %d variants of a %dx%d image", len(vs), w, h))
}

// discardUnfinished deletes the files (and so the rows) of image id's
// variants that an earlier attempt did not finish.
func (t *thumbnailer) discardUnfinished(ctx context.Context, job *queue.Job, id int64) error {
	ids, err := t.st.unfinishedBlobs(ctx, id)
	if err != nil {
		return err
	}
	for _, b := range ids {
		if err := t.blobs.Delete(ctx, b); err != nil && !errors.Is(err, blobs.ErrNotFound) {
			return fmt.Errorf("delete the unfinished variant of an earlier attempt: %w", err)
		}
		if err := t.st.deleteVariantsOf(ctx, id, b); err != nil {
			return err
		}
		job.Logger().Info("deleted the unfinished variant of an earlier attempt", "image_id", id, "blob", b)
	}
	return nil
}

// inspect reads the original's header (and, for a JPEG, its EXIF
// orientation) without decoding it.
func (t *thumbnailer) inspect(ctx context.Context, blobID string) (header, int, error) {
	var h header
	err := t.read(ctx, blobID, func(r io.Reader) error {
		var err error
		h, err = inspect(r, t.opts.limits())
		return err
	})
	if err != nil {
		return header{}, 0, err
	}
	o := 1
	if h.format == formatJPEG {
		err := t.read(ctx, blobID, func(r io.Reader) error {
			o = readOrientation(r)
			return nil
		})
		if err != nil {
			return header{}, 0, err
		}
	}
	return h, o, nil
}

// trackedReader remembers the first error of its reader other than
// io.EOF, so that a decoder's failure can be told apart from the
// storage's.
type trackedReader struct {
	r   io.Reader
	err error
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// read opens blob id and calls fn with its content. A failure to read
// (the database, ctx) is returned as such, to be retried; a stored file
// that does not match its checksum, or an error of fn while reading went
// fine, is content the job refuses: a *rejectError.
func (t *thumbnailer) read(ctx context.Context, id string, fn func(io.Reader) error) error {
	_, rc, err := t.blobs.Open(ctx, id)
	if errors.Is(err, blobs.ErrNotFound) {
		return reject("the original file no longer exists")
	}
	if err != nil {
		return fmt.Errorf("open the original: %w", err)
	}
	defer rc.Close()
	tr := &trackedReader{r: rc}
	ferr := fn(tr)
	switch {
	case tr.err != nil && errors.Is(tr.err, blobs.ErrCorrupt):
		return reject("the stored original is damaged: %v", tr.err)
	case tr.err != nil:
		return fmt.Errorf("read the original: %w", tr.err)
	case ferr == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("read the original: %w", context.Cause(ctx))
	}
	var rej *rejectError
	if errors.As(ferr, &rej) {
		return ferr
	}
	return &rejectError{msg: ferr.Error()}
}

// makeVariants decodes the original once and writes every target.
func (t *thumbnailer) makeVariants(ctx context.Context, job *queue.Job, id int64, blobID string, h header, o int, ts []target) error {
	total := 0
	for _, tg := range ts {
		total += len(tg.sizes)
	}
	if err := setProgress(ctx, job, 5, fmt.Sprintf("decoding a %dx%d %s", h.width, h.height, h.format)); err != nil {
		return err
	}
	return t.cpu.run(ctx, func() error { return t.decodeAndRender(ctx, job, id, blobID, h, o, ts, total) })
}

// decodeAndRender is makeVariants' CPU-bound part, run under the gate.
func (t *thumbnailer) decodeAndRender(ctx context.Context, job *queue.Job, id int64, blobID string, h header, o int, ts []target, total int) error {
	var src image.Image
	err := t.read(ctx, blobID, func(r io.Reader) error {
		var err error
		src, err = decode(r, h)
		return err
	})
	if err != nil {
		return err
	}
	if err := setProgress(ctx, job, 20, fmt.Sprintf("decoded a %dx%d %s", h.width, h.height, h.format)); err != nil {
		return err
	}
	f := h.format.variantFormat()
	done := 0
	// Hand the decoded image over: render drops it once it has been
	// reduced, and nothing here may keep it alive.
	m := src
	src = nil
	return render(ctx, m, o, ts, func(tg target, v image.Image) error {
		if err := t.storeVariant(ctx, id, tg, v, f); err != nil {
			return err
		}
		done += len(tg.sizes)
		return setProgress(ctx, job, 20+79*done/total, fmt.Sprintf("made the %dx%d variant for size %s (%d of %d sizes)",
			tg.w, tg.h, formatSizes(tg.sizes), done, total))
	})
}

// storeVariant encodes m in format f straight into a new blob, linked to
// image id's variants of tg's sizes as soon as it exists and marked ready
// once complete. An attempt that dies in between leaves rows that are
// not ready, whose file the next attempt deletes.
func (t *thumbnailer) storeVariant(ctx context.Context, id int64, tg target, m image.Image, f format) error {
	// The encoding is CPU work: it runs here, on the gate's low-priority
	// thread, while the file store writes what it produces from a
	// goroutine of its own.
	pr, pw := io.Pipe()
	type put struct {
		b   blobs.Blob
		err error
	}
	done := make(chan put, 1)
	go func() {
		b, err := t.blobs.PutWith(ctx, f.contentType(), pr, blobs.PutOptions{Created: func(ctx context.Context, blobID string) error {
			return t.st.linkVariants(ctx, id, tg.sizes, blobID, f.contentType())
		}})
		// Unblock the encoder if Put stopped reading early.
		pr.CloseWithError(errors.New("the file store stopped reading"))
		done <- put{b, err}
	}()
	werr := encode(pw, m, f)
	pw.CloseWithError(werr) // nil closes with io.EOF
	res := <-done
	b, err := res.b, res.err
	if err != nil {
		// Put deleted its blob, and with it the rows linked to it.
		return fmt.Errorf("store the %dx%d variant of image %d: %w", tg.w, tg.h, id, err)
	}
	if werr != nil {
		t.discardVariant(ctx, id, b.ID)
		return fmt.Errorf("encode the %dx%d variant of image %d: %w", tg.w, tg.h, id, werr)
	}
	if t.stored != nil {
		if err := t.stored(tg.sizes[0]); err != nil {
			return err
		}
	}
	if err := t.st.finishVariants(ctx, id, b.ID, tg.w, tg.h, b.Size, len(tg.sizes)); err != nil {
		// Best effort: the next attempt deletes it anyway while rows
		// still point at it, and remakes whatever is not ready.
		t.discardVariant(ctx, id, b.ID)
		return err
	}
	return nil
}

// discardVariant deletes blob blobID, an unfinished variant of image id,
// and its rows, as a best effort that outlives ctx.
func (t *thumbnailer) discardVariant(ctx context.Context, id int64, blobID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := t.blobs.Delete(ctx, blobID); err == nil || errors.Is(err, blobs.ErrNotFound) {
		_ = t.st.deleteVariantsOf(ctx, id, blobID)
	}
}

// setProgress reports progress. Only a lost lease stops the work: a
// failed progress write is not worth failing an image for.
func setProgress(ctx context.Context, job *queue.Job, percent int, msg string) error {
	if err := job.SetProgress(ctx, percent, msg); err != nil {
		if errors.Is(err, queue.ErrLeaseLost) || ctx.Err() != nil {
			return err
		}
		job.Logger().Warn("could not record progress", "err", err)
	}
	return nil
}
