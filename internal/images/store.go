package images

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/database"
)

// store is the SQL of the images and image_variants tables.
type store struct {
	db *database.DB
}

// newStore returns the store of the tables in db.
func newStore(db *database.DB) *store { return &store{db: db} }

const imageColumns = `id, filename, content_type, size, blob_id, sizes, job_id, status, error, width, height, created_at, completed_at`

// scanImage reads one row of imageColumns.
func scanImage(sc database.Scanner) (Image, error) {
	var (
		img           Image
		blobID        sql.NullString
		sizes         string
		width, height sql.NullInt64
	)
	if err := sc.Scan(&img.ID, &img.Filename, &img.ContentType, &img.Size, &blobID, &sizes, &img.JobID, &img.Status, &img.Error,
		&width, &height, database.ScanTime(&img.CreatedAt), database.ScanTime(&img.CompletedAt)); err != nil {
		return img, err
	}
	img.BlobID, img.Width, img.Height = blobID.String, int(width.Int64), int(height.Int64)
	for p := range strings.SplitSeq(sizes, ",") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return img, fmt.Errorf("image %d: stored sizes %q: %w", img.ID, sizes, err)
		}
		img.Sizes = append(img.Sizes, n)
	}
	return img, nil
}

// insert stores a new image whose job is not yet known (job_id 0 until
// setJob, in the same transaction) and returns its id.
func (s *store) insert(ctx context.Context, tx *sql.Tx, img Image) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, s.db.Rebind(`INSERT INTO images (filename, content_type, size, blob_id, sizes, job_id, status, created_at)
VALUES (?, ?, ?, ?, ?, 0, ?, ?) RETURNING id`),
		img.Filename, img.ContentType, img.Size, img.BlobID, formatSizes(img.Sizes), StatusPending, s.db.Time(img.CreatedAt)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert image: %w", err)
	}
	return id, nil
}

// setJob records image id's job.
func (s *store) setJob(ctx context.Context, tx *sql.Tx, id, jobID int64) error {
	if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE images SET job_id = ? WHERE id = ?`), jobID, id); err != nil {
		return fmt.Errorf("set job of image %d: %w", id, err)
	}
	return nil
}

// get returns image id without its variants, or an error wrapping
// ErrNotFound.
func (s *store) get(ctx context.Context, q database.Querier, id int64) (Image, error) {
	img, err := scanImage(q.QueryRowContext(ctx, s.db.Rebind(`SELECT `+imageColumns+` FROM images WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Image{}, notFound(id)
	}
	if err != nil {
		return Image{}, fmt.Errorf("read image %d: %w", id, err)
	}
	return img, nil
}

// list returns a page of images, newest first.
func (s *store) list(ctx context.Context, p ListParams) ([]Image, error) {
	query, args := database.NewSelect(`SELECT `+imageColumns+` FROM images`).Newest(p.AfterID, p.Limit)
	imgs, err := database.QueryAll(ctx, s.db.R, s.db.Rebind(query), args, scanImage)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return imgs, nil
}

const variantColumns = `size, blob_id, content_type, width, height, bytes`

// scanVariant reads one row of variantColumns.
func scanVariant(sc database.Scanner) (Variant, error) {
	var v Variant
	err := sc.Scan(&v.Size, &v.BlobID, &v.ContentType, &v.Width, &v.Height, &v.Bytes)
	return v, err
}

// variants returns image id's ready variants by size.
func (s *store) variants(ctx context.Context, q database.Querier, id int64) ([]Variant, error) {
	vs, err := database.QueryAll(ctx, q, s.db.Rebind(`SELECT `+variantColumns+` FROM image_variants WHERE image_id = ? AND ready ORDER BY size`), []any{id}, scanVariant)
	if err != nil {
		return nil, fmt.Errorf("read variants of image %d: %w", id, err)
	}
	return vs, nil
}

// imageVariant is a variant with its image's id.
type imageVariant struct {
	imageID int64
	Variant
}

// variantsOf returns the ready variants of the images with ids from lo
// to hi, by image and size.
func (s *store) variantsOf(ctx context.Context, lo, hi int64) ([]imageVariant, error) {
	vs, err := database.QueryAll(ctx, s.db.R, s.db.Rebind(`SELECT image_id, `+variantColumns+` FROM image_variants
WHERE image_id >= ? AND image_id <= ? AND ready ORDER BY image_id, size`), []any{lo, hi}, func(sc database.Scanner) (imageVariant, error) {
		var v imageVariant
		err := sc.Scan(&v.imageID, &v.Size, &v.BlobID, &v.ContentType, &v.Width, &v.Height, &v.Bytes)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("read variants: %w", err)
	}
	return vs, nil
}

// variant returns image id's ready variant of size, or an error wrapping
// ErrNotReady.
func (s *store) variant(ctx context.Context, id int64, size int) (Variant, error) {
	v, err := scanVariant(s.db.R.QueryRowContext(ctx, s.db.Rebind(`SELECT `+variantColumns+` FROM image_variants WHERE image_id = ? AND size = ? AND ready`), id, size))
	if errors.Is(err, sql.ErrNoRows) {
		return Variant{}, fmt.Errorf("image %d, size %d: %w", id, size, ErrNotReady)
	}
	if err != nil {
		return Variant{}, fmt.Errorf("read variant %d of image %d: %w", size, id, err)
	}
	return v, nil
}

// unfinishedBlobs returns the blobs of image id's variants that are not
// ready: files of attempts that died before finishing them.
func (s *store) unfinishedBlobs(ctx context.Context, id int64) ([]string, error) {
	bs, err := database.QueryAll(ctx, s.db.W, s.db.Rebind(`SELECT DISTINCT blob_id FROM image_variants WHERE image_id = ? AND NOT ready`), []any{id},
		func(sc database.Scanner) (string, error) {
			var b string
			err := sc.Scan(&b)
			return b, err
		})
	if err != nil {
		return nil, fmt.Errorf("find unfinished variants of image %d: %w", id, err)
	}
	return bs, nil
}

// deleteVariantsOf deletes image id's variant rows that still point at
// blobID (their blob is gone or going).
func (s *store) deleteVariantsOf(ctx context.Context, id int64, blobID string) error {
	if _, err := s.db.W.ExecContext(ctx, s.db.Rebind(`DELETE FROM image_variants WHERE image_id = ? AND blob_id = ?`), id, blobID); err != nil {
		return fmt.Errorf("delete variants of image %d: %w", id, err)
	}
	return nil
}

// linkVariants records blobID, being written, as image id's file for
// sizes (not ready), so that a later attempt can find and delete it
// should this one die. Its errors do not name the image: the file's
// writer does.
func (s *store) linkVariants(ctx context.Context, id int64, sizes []int, blobID, contentType string) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		for _, size := range sizes {
			if _, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO image_variants (image_id, size, blob_id, content_type) VALUES (?, ?, ?, ?)`),
				id, size, blobID, contentType); err != nil {
				return fmt.Errorf("link variant %d: %w", size, err)
			}
		}
		return nil
	})
}

// errLinkLost means a variant row no longer points at the file an
// attempt wrote: another attempt took it over.
var errLinkLost = errors.New("the variant no longer expects this attempt's file")

// finishVariants marks image id's variants written to blobID ready, with
// their dimensions and length; want is how many rows must change.
func (s *store) finishVariants(ctx context.Context, id int64, blobID string, w, h int, size int64, want int) error {
	n, err := database.Exec(ctx, s.db.W, s.db.Rebind(`UPDATE image_variants SET width = ?, height = ?, bytes = ?, ready = ?
WHERE image_id = ? AND blob_id = ? AND NOT ready`), w, h, size, true, id, blobID)
	if err != nil {
		return fmt.Errorf("finish variants of image %d: %w", id, err)
	}
	if n != int64(want) {
		return fmt.Errorf("finish variants of image %d: %d of %d rows: %w", id, n, want, errLinkLost)
	}
	return nil
}

// setDimensions records image id's dimensions as displayed.
func (s *store) setDimensions(ctx context.Context, id int64, w, h int) error {
	if _, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE images SET width = ?, height = ? WHERE id = ?`), w, h, id); err != nil {
		return fmt.Errorf("record dimensions of image %d: %w", id, err)
	}
	return nil
}

// restart makes image id, which failed, pending again (its job is being
// retried).
func (s *store) restart(ctx context.Context, id int64) error {
	if _, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE images SET status = ?, error = '', completed_at = NULL WHERE id = ? AND status = ?`),
		StatusPending, id, StatusFailed); err != nil {
		return fmt.Errorf("restart image %d: %w", id, err)
	}
	return nil
}

// complete marks image id done.
func (s *store) complete(ctx context.Context, id int64, w, h int, now time.Time) error {
	if _, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE images SET status = ?, error = '', width = ?, height = ?, completed_at = ? WHERE id = ?`),
		StatusDone, w, h, s.db.Time(now), id); err != nil {
		return fmt.Errorf("complete image %d: %w", id, err)
	}
	return nil
}

// fail marks image id failed with msg, unless it is done.
func (s *store) fail(ctx context.Context, id int64, msg string, now time.Time) error {
	if _, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE images SET status = ?, error = ?, completed_at = ? WHERE id = ? AND status <> ?`),
		StatusFailed, msg, s.db.Time(now), id, StatusDone); err != nil {
		return fmt.Errorf("mark image %d failed: %w", id, err)
	}
	return nil
}
