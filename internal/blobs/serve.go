package blobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/kilnhq/kiln/internal/httpapi"
)

// Download returns the handler of a GET .../{id}/<file>: it calls get
// with the path's id and serves, by [Serve], the blob that file names in
// what get returned, under the download name file gives.
func Download[T any](store *Store, get func(ctx context.Context, id int64) (T, error), file func(T) (blobID, filename string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := httpapi.PathID(r, "id")
		var v T
		if err == nil {
			v, err = get(r.Context(), id)
		}
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		blobID, name := file(v)
		Serve(w, r, store, blobID, name)
	}
}

// Serve answers r with the blob that has the id as a download named
// filename (sanitised to letters, digits, '.', '-' and '_'). It sets
// Content-Type, Content-Length, ETag (the quoted SHA-256) and
// Content-Disposition: attachment; answers 304 Not Modified when
// If-None-Match names the ETag (or is *); sends headers only for HEAD; and
// streams the content chunk by chunk otherwise. A missing or incomplete
// blob is a 404 problem. Should reading fail once the body has started,
// the connection is aborted, so that the client sees a short body rather
// than a complete-looking one.
func Serve(w http.ResponseWriter, r *http.Request, store *Store, id, filename string) {
	b, err := store.Stat(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		httpapi.WriteError(w, r, &httpapi.Error{Code: httpapi.CodeNotFound, Message: "the file does not exist", Err: err})
		return
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	etag := `"` + b.SHA256 + `"`
	h := w.Header()
	h.Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	ct := b.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.FormatInt(b.Size, 10))
	h.Set("Content-Disposition", `attachment; filename="`+SanitizeFilename(filename)+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	rc := store.reader(r.Context(), b)
	defer rc.Close()
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		httpapi.Logger(r.Context()).Warn("blob download interrupted", "blob", b.ID, "err", fmt.Errorf("serve blob: %w", err))
		panic(http.ErrAbortHandler)
	}
}

// etagMatches reports whether an If-None-Match header value matches etag,
// comparing weakly (a W/ prefix is ignored) as RFC 9110 asks for
// If-None-Match.
func etagMatches(header, etag string) bool {
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" {
			return true
		}
		if strings.TrimPrefix(part, "W/") == etag {
			return true
		}
	}
	return false
}

// maxFilename caps the length of a sanitised filename.
const maxFilename = 200

// SanitizeFilename returns name reduced to a safe download filename: the
// last path element, with every character other than ASCII letters,
// digits, '.', '-' and '_' replaced by '_', without leading dots, and at
// most 200 bytes. An empty result becomes "download".
func SanitizeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, c := range name {
		if b.Len() >= maxFilename {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteRune(c)
		case c == '.':
			if b.Len() > 0 {
				b.WriteRune(c)
			}
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "download"
	}
	return b.String()
}
