package idempotency

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"

	"github.com/kilnhq/kiln/internal/httpapi"
)

// bufferLimit is the largest request body the middleware keeps in memory
// to fingerprint it; a larger one (an upload) is spooled to a file.
const bufferLimit = 1 << 20

// fingerprint reads r's body whole and returns the request's fingerprint:
// SHA-256 over its method, the route pattern that matched, its path and
// query (each prefixed with its length), then its body and the body's
// length, so that no two requests share an encoding. It replaces r.Body
// with a reader of the same bytes: a body of up to [bufferLimit] bytes is
// kept in memory, a larger one is hashed as it is copied to a temporary
// file in [Options.SpoolDir]. cleanup removes that file; call it once the
// request is served. Errors are *httpapi.Error: 413 past the route's
// body limit, 400 for a body that cannot be read, 500 for a spool file
// that cannot be written.
func (s *Store) fingerprint(r *http.Request) (hash []byte, cleanup func(), err error) {
	h := sha256.New()
	var n [8]byte
	for _, part := range []string{r.Method, r.Pattern, r.URL.Path, r.URL.RawQuery} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	cleanup = func() {}
	var size int64
	if r.Body != nil && r.Body != http.NoBody {
		var buf bytes.Buffer
		size, err = io.CopyN(&buf, r.Body, bufferLimit+1)
		switch {
		case errors.Is(err, io.EOF):
			h.Write(buf.Bytes())
			r.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
		case err != nil:
			return nil, cleanup, readError(err)
		default:
			var f *os.File
			f, size, err = s.spool(io.MultiReader(&buf, r.Body), h)
			if err != nil {
				return nil, cleanup, err
			}
			r.Body = f
			cleanup = func() {
				_ = f.Close()
				_ = os.Remove(f.Name())
			}
		}
	}
	binary.BigEndian.PutUint64(n[:], uint64(size))
	h.Write(n[:])
	return h.Sum(nil), cleanup, nil
}

// spool copies body into a new temporary file while hashing it into h,
// and returns the file, positioned at its start, and its size.
func (s *Store) spool(body io.Reader, h hash.Hash) (*os.File, int64, error) {
	f, err := os.CreateTemp(s.opts.SpoolDir, "kiln-request-body-*")
	if err != nil {
		return nil, 0, &httpapi.Error{Code: httpapi.CodeInternal, Err: fmt.Errorf("spool a keyed request's body: %w", err)}
	}
	fail := func(err error) (*os.File, int64, error) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, 0, err
	}
	size, err := io.Copy(io.MultiWriter(f, h), body)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fail(&httpapi.Error{Code: httpapi.CodeInternal, Err: fmt.Errorf("spool a keyed request's body: %w", err)})
		}
		return fail(readError(err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(&httpapi.Error{Code: httpapi.CodeInternal, Err: fmt.Errorf("spool a keyed request's body: %w", err)})
	}
	return f, size, nil
}

// readError is the answer to a request body that could not be read.
func readError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return httpapi.Errorf(httpapi.CodeTooLarge, "the request body is larger than %d bytes", mbe.Limit)
	}
	return &httpapi.Error{Code: httpapi.CodeInvalid, Message: "could not read the request body", Err: err}
}
