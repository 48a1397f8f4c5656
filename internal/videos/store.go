package videos

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kilnhq/kiln/internal/database"
)

// store reads and writes the videos table.
type store struct{ db *database.DB }

// newStore returns the store of the tables in db.
func newStore(db *database.DB) *store { return &store{db: db} }

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *store) insert(ctx context.Context, tx *sql.Tx, v Video) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, s.db.Rebind(`INSERT INTO videos (blob_id, filename, at_ms, width, created_at)
		VALUES (?, ?, ?, ?, ?) RETURNING id`),
		v.BlobID, v.Filename, v.AtMS, v.Width, s.db.Time(v.CreatedAt)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert video: %w", err)
	}
	return id, nil
}

func (s *store) setJob(ctx context.Context, tx *sql.Tx, id, jobID int64) error {
	if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE videos SET job_id = ? WHERE id = ?`), jobID, id); err != nil {
		return fmt.Errorf("video %d: set job: %w", id, err)
	}
	return nil
}

const selectVideo = `SELECT id, blob_id, filename, at_ms, width, job_id, coalesce(thumbnail_blob_id, ''),
	thumbnail_width, thumbnail_height, error, created_at, completed_at FROM videos WHERE id = ?`

func (s *store) get(ctx context.Context, q querier, id int64) (Video, error) {
	var v Video
	err := q.QueryRowContext(ctx, s.db.Rebind(selectVideo), id).Scan(&v.ID, &v.BlobID, &v.Filename, &v.AtMS, &v.Width,
		&v.JobID, &v.ThumbnailBlobID, &v.ThumbnailWidth, &v.ThumbnailHeight, &v.Error,
		database.ScanTime(&v.CreatedAt), database.ScanTime(&v.CompletedAt))
	if errors.Is(err, sql.ErrNoRows) {
		return Video{}, fmt.Errorf("video %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Video{}, fmt.Errorf("read video %d: %w", id, err)
	}
	return v, nil
}

// finish records the thumbnail of video id and returns the blob of the
// thumbnail it replaces, if any, for the caller to delete.
func (s *store) finish(ctx context.Context, id int64, blobID string, w, h int, now time.Time) (old string, err error) {
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		v, err := s.get(ctx, tx, id)
		if err != nil {
			return err
		}
		old = v.ThumbnailBlobID
		_, err = tx.ExecContext(ctx, s.db.Rebind(`UPDATE videos SET thumbnail_blob_id = ?, thumbnail_width = ?, thumbnail_height = ?,
			error = '', completed_at = ? WHERE id = ?`), blobID, w, h, s.db.Time(now), id)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("video %d: record thumbnail: %w", id, err)
	}
	return old, nil
}

// fail records why video id's thumbnail cannot be made.
func (s *store) fail(ctx context.Context, id int64, msg string, now time.Time) error {
	if _, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE videos SET error = ?, completed_at = ? WHERE id = ?`), msg, s.db.Time(now), id); err != nil {
		return fmt.Errorf("video %d: record failure: %w", id, err)
	}
	return nil
}
