// Package blobs stores files (uploads, image variants, generated reports)
// in the application database, so that every machine running kiln sees
// the same files without a shared disk or an object store.
//
// A blob is written as a row in blobs and its content as chunks of
// [ChunkSize] bytes in blob_chunks, one row and one INSERT per chunk. Put
// reads its input one chunk at a time and Open reads back one chunk at a
// time with one SELECT per chunk, so neither ever holds more than a chunk
// of a blob in memory, whatever its size. A blob is readable only once
// Put has marked it complete; a failed Put removes what it wrote.
package blobs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/kilnhq/kiln/internal/database"
)

// ChunkSize is the size of every stored chunk but a blob's last, which
// holds the remainder (a blob of n bytes has ceil(n/ChunkSize) chunks; an
// empty blob has none).
const ChunkSize = 256 << 10

// Errors returned by the store; test for them with errors.Is.
var (
	// ErrNotFound means no complete blob has the id.
	ErrNotFound = errors.New("blob not found")
	// ErrTooLarge means the content passed the size limit given to Put.
	ErrTooLarge = errors.New("blob is larger than the limit")
	// ErrCorrupt means stored content does not match the blob's recorded
	// size or SHA-256.
	ErrCorrupt = errors.New("blob content does not match its size or checksum")
)

// Blob describes a stored blob.
type Blob struct {
	// ID is random and URL-safe (22 characters).
	ID          string
	ContentType string
	// Size is the content's length in bytes.
	Size int64
	// SHA256 is the hex SHA-256 of the content.
	SHA256    string
	CreatedAt time.Time
}

// Store reads and writes blobs. It is safe for concurrent use.
type Store struct {
	db  *database.DB
	now func() time.Time
}

// Option configures a [Store].
type Option func(*Store)

// WithClock sets the clock that stamps created_at (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// NewStore returns a store over db's blobs and blob_chunks tables.
func NewStore(db *database.DB, opts ...Option) *Store {
	s := &Store{db: db, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// PutOptions are the optional settings of [Store.PutWith].
type PutOptions struct {
	// MaxSize, if positive, is the largest content accepted; longer
	// content fails with [ErrTooLarge] after reading at most MaxSize+1
	// bytes of it.
	MaxSize int64
	// Created, if set, is called with the new blob's id once its row
	// exists and before any content is read, so that the caller can
	// record the id (and find and delete the blob should the process die
	// before Put returns). An error from it fails the Put.
	Created func(ctx context.Context, id string) error
}

// Put stores r's content as a new blob of the given content type; see
// [Store.PutWith].
func (s *Store) Put(ctx context.Context, contentType string, r io.Reader) (Blob, error) {
	return s.PutWith(ctx, contentType, r, PutOptions{})
}

// PutLimit is [Store.Put] refusing content longer than maxSize bytes
// with [ErrTooLarge].
func (s *Store) PutLimit(ctx context.Context, contentType string, r io.Reader, maxSize int64) (Blob, error) {
	return s.PutWith(ctx, contentType, r, PutOptions{MaxSize: maxSize})
}

// PutWith streams r into a new blob: it reads r one chunk at a time,
// inserting each chunk as it fills and hashing the content as it goes,
// then records the size and SHA-256 and marks the blob complete. Each
// chunk is its own statement, not one long transaction, so a large upload
// does not hold the database's write lock while it reads a slow client.
// On any error (from r, the limit, ctx or the database) the partial blob
// is deleted and the error returned.
func (s *Store) PutWith(ctx context.Context, contentType string, r io.Reader, opts PutOptions) (_ Blob, err error) {
	id, err := newID()
	if err != nil {
		return Blob{}, err
	}
	b := Blob{ID: id, ContentType: contentType, CreatedAt: database.StoredTime(s.now())}
	if _, err := s.db.W.ExecContext(ctx, s.db.Rebind(`INSERT INTO blobs (id, content_type, created_at) VALUES (?, ?, ?)`),
		id, contentType, s.db.Time(b.CreatedAt)); err != nil {
		return Blob{}, fmt.Errorf("create blob: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		// The caller's context may be what failed; the clean-up must
		// still run.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, derr := s.remove(dctx, id, false); derr != nil {
			err = fmt.Errorf("%w (and deleting it failed: %v)", err, derr)
		}
	}()
	if opts.Created != nil {
		if err := opts.Created(ctx, id); err != nil {
			return Blob{}, fmt.Errorf("blob %s: %w", id, err)
		}
	}
	if opts.MaxSize > 0 {
		r = io.LimitReader(r, opts.MaxSize+1)
	}
	h := sha256.New()
	size, err := s.writeChunks(ctx, id, r, h, opts.MaxSize)
	if err != nil {
		return Blob{}, err
	}
	b.Size, b.SHA256 = size, hex.EncodeToString(h.Sum(nil))
	res, err := s.db.W.ExecContext(ctx, s.db.Rebind(`UPDATE blobs SET size = ?, sha256 = ?, complete = ? WHERE id = ?`),
		b.Size, b.SHA256, true, id)
	if err != nil {
		return Blob{}, fmt.Errorf("complete blob %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return Blob{}, fmt.Errorf("complete blob %s: %w", id, err)
	} else if n != 1 {
		return Blob{}, fmt.Errorf("complete blob %s: it was deleted while being written", id)
	}
	return b, nil
}

// writeChunks inserts r's content as chunks 0, 1, … of blob id, reusing
// one ChunkSize buffer, and returns the number of bytes written.
func (s *Store) writeChunks(ctx context.Context, id string, r io.Reader, h hash.Hash, maxSize int64) (int64, error) {
	insert := s.db.Rebind(`INSERT INTO blob_chunks (blob_id, seq, data) VALUES (?, ?, ?)`)
	buf := make([]byte, ChunkSize)
	var size int64
	for seq := 0; ; seq++ {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("blob %s: %w", id, context.Cause(ctx))
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			size += int64(n)
			if maxSize > 0 && size > maxSize {
				return 0, fmt.Errorf("blob %s: %w (%d bytes)", id, ErrTooLarge, maxSize)
			}
			h.Write(buf[:n])
			if _, err := s.db.W.ExecContext(ctx, insert, id, seq, buf[:n]); err != nil {
				return 0, fmt.Errorf("blob %s: write chunk %d: %w", id, seq, err)
			}
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			return size, nil
		default:
			return 0, fmt.Errorf("blob %s: read content: %w", id, rerr)
		}
	}
}

// newID returns 16 random bytes in unpadded URL-safe base64 (22
// characters).
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("blob id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

const selectBlob = `SELECT id, content_type, size, sha256, created_at FROM blobs WHERE id = ? AND complete`

// Stat returns the complete blob with the id, or [ErrNotFound].
func (s *Store) Stat(ctx context.Context, id string) (Blob, error) {
	var b Blob
	err := s.db.R.QueryRowContext(ctx, s.db.Rebind(selectBlob), id).
		Scan(&b.ID, &b.ContentType, &b.Size, &b.SHA256, database.ScanTime(&b.CreatedAt))
	if errors.Is(err, sql.ErrNoRows) {
		return Blob{}, fmt.Errorf("blob %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Blob{}, fmt.Errorf("stat blob %s: %w", id, err)
	}
	return b, nil
}

// Open returns the complete blob with the id and a reader of its content
// ([ErrNotFound] for a missing or incomplete blob). The reader fetches
// one chunk per SELECT as it is read, using ctx, and checks the size and
// SHA-256 at the end ([ErrCorrupt]). Close it when done.
func (s *Store) Open(ctx context.Context, id string) (Blob, io.ReadCloser, error) {
	b, err := s.Stat(ctx, id)
	if err != nil {
		return Blob{}, nil, err
	}
	return b, s.reader(ctx, b), nil
}

func (s *Store) reader(ctx context.Context, b Blob) io.ReadCloser {
	return &reader{ctx: ctx, s: s, b: b, h: sha256.New(), query: s.db.Rebind(`SELECT data FROM blob_chunks WHERE blob_id = ? AND seq = ?`)}
}

// reader reads a blob's chunks in order, holding at most one.
type reader struct {
	ctx    context.Context
	s      *Store
	b      Blob
	h      hash.Hash
	query  string
	seq    int
	read   int64 // bytes of content fetched so far
	buf    []byte
	err    error // sticky
	closed bool
}

func (r *reader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("blobs: read of a closed blob reader")
	}
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// next fetches the next chunk into r.buf, or returns io.EOF once the
// whole blob has been read and verified.
func (r *reader) next() error {
	if r.read == r.b.Size {
		if sum := hex.EncodeToString(r.h.Sum(nil)); sum != r.b.SHA256 {
			return fmt.Errorf("blob %s: %w: SHA-256 %s, recorded %s", r.b.ID, ErrCorrupt, sum, r.b.SHA256)
		}
		return io.EOF
	}
	var data []byte
	err := r.s.db.R.QueryRowContext(r.ctx, r.query, r.b.ID, r.seq).Scan(&data)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("blob %s: chunk %d is missing after %d of %d bytes (deleted while read?): %w", r.b.ID, r.seq, r.read, r.b.Size, ErrCorrupt)
	case err != nil:
		return fmt.Errorf("blob %s: read chunk %d: %w", r.b.ID, r.seq, err)
	case len(data) == 0 || r.read+int64(len(data)) > r.b.Size:
		return fmt.Errorf("blob %s: chunk %d has %d bytes, more than the %d left: %w", r.b.ID, r.seq, len(data), r.b.Size-r.read, ErrCorrupt)
	}
	r.seq++
	r.read += int64(len(data))
	r.h.Write(data)
	r.buf = data
	return nil
}

func (r *reader) Close() error {
	r.closed, r.buf = true, nil
	return nil
}

// Delete deletes the blob with the id, complete or not, and its chunks;
// [ErrNotFound] if there is none. References to it from reports become
// NULL.
func (s *Store) Delete(ctx context.Context, id string) error {
	n, err := s.remove(ctx, id, false)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("delete blob %q: %w", id, ErrNotFound)
	}
	return nil
}

// remove runs removeTx in a transaction of its own.
func (s *Store) remove(ctx context.Context, id string, onlyIncomplete bool) (int64, error) {
	var n int64
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = s.removeTx(ctx, tx, id, onlyIncomplete)
		return err
	})
	return n, err
}

// removeTx deletes blob id's row and chunks in tx (the chunks explicitly,
// not only through ON DELETE CASCADE, so that it does not depend on
// SQLite's foreign_keys setting) and returns how many blob rows it
// deleted.
func (s *Store) removeTx(ctx context.Context, tx *sql.Tx, id string, onlyIncomplete bool) (int64, error) {
	q := `DELETE FROM blobs WHERE id = ?`
	if onlyIncomplete {
		q += ` AND NOT complete`
	}
	res, err := tx.ExecContext(ctx, s.db.Rebind(q), id)
	if err != nil {
		return 0, fmt.Errorf("delete blob %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete blob %s: %w", id, err)
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM blob_chunks WHERE blob_id = ?`), id); err != nil {
		return 0, fmt.Errorf("delete chunks of blob %s: %w", id, err)
	}
	return n, nil
}

// PurgeIncomplete deletes blobs that were never completed and were
// created before the given time: what a process that died during a Put
// leaves behind. Pass a time well before now (a day ago, say) so that
// uploads still in progress are left alone (one that is removed fails
// when it tries to complete). It returns how many blobs it deleted.
func (s *Store) PurgeIncomplete(ctx context.Context, before time.Time) (int, error) {
	rows, err := s.db.R.QueryContext(ctx, s.db.Rebind(`SELECT id FROM blobs WHERE NOT complete AND created_at < ?`), s.db.Time(before))
	if err != nil {
		return 0, fmt.Errorf("find incomplete blobs: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("find incomplete blobs: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("find incomplete blobs: %w", err)
	}
	n := 0
	for _, id := range ids {
		deleted, err := s.remove(ctx, id, true)
		if err != nil {
			return n, err
		}
		n += int(deleted)
	}
	return n, nil
}
