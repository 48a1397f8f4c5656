package blobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
)

// content returns n deterministic pseudo-random bytes.
func content(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = r.Read(b)
	return b
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func count(t *testing.T, db *database.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.R.QueryRowContext(context.Background(), db.Rebind(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func readAll(t *testing.T, s *Store, id string) (Blob, []byte) {
	t.Helper()
	b, rc, err := s.Open(context.Background(), id)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return b, got
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := context.Background()
		now := time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.UTC)
		s := NewStore(e.DB, WithClock(func() time.Time { return now }))
		for _, n := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 5*ChunkSize*4 + 12345} {
			t.Run(fmt.Sprint(n), func(t *testing.T) {
				data := content(uint64(n), n)
				b, err := s.Put(ctx, "application/x-test", bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				if len(b.ID) < 22 || strings.Trim(b.ID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
					t.Errorf("id %q is not 22+ URL-safe characters", b.ID)
				}
				want := Blob{ID: b.ID, ContentType: "application/x-test", Size: int64(n), SHA256: hexSum(data), CreatedAt: now.Truncate(time.Microsecond)}
				if b != want {
					t.Errorf("Put returned %+v, want %+v", b, want)
				}
				st, err := s.Stat(ctx, b.ID)
				if err != nil || st != want {
					t.Errorf("Stat: %+v, %v; want %+v", st, err, want)
				}
				ob, got := readAll(t, s, b.ID)
				if ob != want {
					t.Errorf("Open returned %+v, want %+v", ob, want)
				}
				if !bytes.Equal(got, data) {
					t.Errorf("read %d bytes that differ from the %d written", len(got), n)
				}
				// Chunking: ceil(n/ChunkSize) rows, all full but the last.
				wantChunks := (n + ChunkSize - 1) / ChunkSize
				if c := count(t, e.DB, `SELECT count(*) FROM blob_chunks WHERE blob_id = ?`, b.ID); c != wantChunks {
					t.Errorf("%d chunk rows, want %d", c, wantChunks)
				}
				if wantChunks > 0 {
					if c := count(t, e.DB, `SELECT count(*) FROM blob_chunks WHERE blob_id = ? AND length(data) = ?`, b.ID, ChunkSize); c != n/ChunkSize {
						t.Errorf("%d full chunks, want %d", c, n/ChunkSize)
					}
					if c := count(t, e.DB, `SELECT max(seq) FROM blob_chunks WHERE blob_id = ?`, b.ID); c != wantChunks-1 {
						t.Errorf("last seq %d, want %d", c, wantChunks-1)
					}
				}
			})
		}
	})
}

// smallReads hands out at most 1000 bytes per Read, as a network body
// might; chunks must still be full.
type smallReads struct{ r io.Reader }

func (s smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 1000)]) }

func TestSmallReadsFillChunks(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		s := NewStore(e.DB)
		data := content(7, 2*ChunkSize+10)
		b, err := s.Put(context.Background(), "text/plain", smallReads{bytes.NewReader(data)})
		if err != nil {
			t.Fatal(err)
		}
		if c := count(t, e.DB, `SELECT count(*) FROM blob_chunks WHERE blob_id = ?`, b.ID); c != 3 {
			t.Errorf("%d chunks, want 3", c)
		}
		if _, got := readAll(t, s, b.ID); !bytes.Equal(got, data) {
			t.Error("content differs")
		}
	})
}

// failingReader returns n bytes of content and then an error.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(len(p), f.n)
	clear(p[:k])
	f.n -= k
	return k, nil
}

func noRows(t *testing.T, db *database.DB) {
	t.Helper()
	if n := count(t, db, `SELECT count(*) FROM blobs`); n != 0 {
		t.Errorf("%d blob rows left", n)
	}
	if n := count(t, db, `SELECT count(*) FROM blob_chunks`); n != 0 {
		t.Errorf("%d chunk rows left", n)
	}
}

func TestFailedPutLeavesNothing(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := context.Background()
		s := NewStore(e.DB)
		boom := errors.New("connection reset")
		_, err := s.Put(ctx, "text/plain", &failingReader{n: 2*ChunkSize + 100, err: boom})
		if !errors.Is(err, boom) {
			t.Fatalf("Put error %v, want %v", err, boom)
		}
		noRows(t, e.DB)

		// Over the limit: refused, nothing left; at the limit: stored.
		_, err = s.PutLimit(ctx, "text/plain", bytes.NewReader(content(1, ChunkSize+2)), ChunkSize+1)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("PutLimit error %v, want ErrTooLarge", err)
		}
		noRows(t, e.DB)
		if _, err := s.PutLimit(ctx, "text/plain", bytes.NewReader(content(1, ChunkSize+1)), ChunkSize+1); err != nil {
			t.Fatalf("PutLimit at the limit: %v", err)
		}
		// The limit stops reading: an endless reader is refused.
		if _, err := s.PutLimit(ctx, "text/plain", endless{}, 10); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("endless PutLimit error %v", err)
		}

		// A context cancelled midway.
		cctx, cancel := context.WithCancel(ctx)
		_, err = s.Put(cctx, "text/plain", &cancelAfter{r: bytes.NewReader(content(2, 3*ChunkSize)), n: ChunkSize + 5, cancel: cancel})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Put error %v", err)
		}
		if n := count(t, e.DB, `SELECT count(*) FROM blobs`); n != 1 {
			t.Errorf("%d blob rows, want only the one stored at the limit", n)
		}
		if n := count(t, e.DB, `SELECT count(*) FROM blob_chunks`); n != 2 {
			t.Errorf("%d chunk rows, want the 2 of the blob at the limit", n)
		}

		// A Created hook that fails fails the Put and removes the blob.
		var seen string
		_, err = s.PutWith(ctx, "text/plain", strings.NewReader("x"), PutOptions{Created: func(ctx context.Context, id string) error {
			seen = id
			return boom
		}})
		if !errors.Is(err, boom) || seen == "" {
			t.Fatalf("PutWith error %v (hook saw %q)", err, seen)
		}
		if n := count(t, e.DB, `SELECT count(*) FROM blobs WHERE id = ?`, seen); n != 0 {
			t.Errorf("blob of a failed hook left behind")
		}
	})
}

type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }

// cancelAfter cancels its context once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n -= k
	if c.n <= 0 {
		c.cancel()
	}
	return k, err
}

func TestConcurrentPuts(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		s := NewStore(e.DB)
		const n = 8
		var wg sync.WaitGroup
		ids := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				b, err := s.Put(context.Background(), "application/octet-stream", bytes.NewReader(content(uint64(100+i), ChunkSize*2+1+i*1000)))
				ids[i], errs[i] = b.ID, err
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("put %d: %v", i, errs[i])
			}
			if seen[ids[i]] {
				t.Fatalf("id %s given twice", ids[i])
			}
			seen[ids[i]] = true
			if _, got := readAll(t, s, ids[i]); !bytes.Equal(got, content(uint64(100+i), ChunkSize*2+1+i*1000)) {
				t.Errorf("blob %d: content differs", i)
			}
		}
		if c := count(t, e.DB, `SELECT count(*) FROM blob_chunks`); c != 3*n {
			t.Errorf("%d chunks, want %d", c, 3*n)
		}
	})
}

func TestOpenMissingIncompleteAndDelete(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := context.Background()
		s := NewStore(e.DB)
		if _, _, err := s.Open(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open missing: %v", err)
		}
		if _, err := s.Stat(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stat missing: %v", err)
		}
		// While a Put runs, its blob is not yet readable.
		var during error
		b, err := s.PutWith(ctx, "text/plain", strings.NewReader("hello"), PutOptions{Created: func(ctx context.Context, id string) error {
			_, _, during = s.Open(ctx, id)
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(during, ErrNotFound) {
			t.Errorf("Open of a blob being written: %v, want ErrNotFound", during)
		}
		// A blob left incomplete (its writer died) is not found either.
		old := time.Now().Add(-48 * time.Hour)
		if _, err := e.DB.W.ExecContext(ctx, e.DB.Rebind(`INSERT INTO blobs (id, content_type, created_at) VALUES (?, ?, ?)`), "incomplete-blob-id-0000", "text/plain", e.DB.Time(old)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.DB.W.ExecContext(ctx, e.DB.Rebind(`INSERT INTO blob_chunks (blob_id, seq, data) VALUES (?, 0, ?)`), "incomplete-blob-id-0000", []byte("partial")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Open(ctx, "incomplete-blob-id-0000"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open incomplete: %v", err)
		}
		// PurgeIncomplete removes it but neither complete blobs nor
		// recent incomplete ones.
		if _, err := e.DB.W.ExecContext(ctx, e.DB.Rebind(`INSERT INTO blobs (id, content_type, created_at) VALUES (?, ?, ?)`), "recent-incomplete-00000", "text/plain", e.DB.Time(time.Now())); err != nil {
			t.Fatal(err)
		}
		n, err := s.PurgeIncomplete(ctx, time.Now().Add(-time.Hour))
		if err != nil || n != 1 {
			t.Errorf("PurgeIncomplete = %d, %v; want 1", n, err)
		}
		if c := count(t, e.DB, `SELECT count(*) FROM blob_chunks WHERE blob_id = ?`, "incomplete-blob-id-0000"); c != 0 {
			t.Errorf("purged blob left %d chunks", c)
		}
		if c := count(t, e.DB, `SELECT count(*) FROM blobs`); c != 2 {
			t.Errorf("%d blobs after purge, want 2", c)
		}
		if _, got := readAll(t, s, b.ID); string(got) != "hello" {
			t.Errorf("complete blob after purge: %q", got)
		}

		if err := s.Delete(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Open(ctx, b.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open deleted: %v", err)
		}
		if err := s.Delete(ctx, b.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete twice: %v", err)
		}
		if c := count(t, e.DB, `SELECT count(*) FROM blob_chunks WHERE blob_id = ?`, b.ID); c != 0 {
			t.Errorf("deleted blob left %d chunks", c)
		}
	})
}

func TestCorruptionIsDetected(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := context.Background()
		s := NewStore(e.DB)
		data := content(3, ChunkSize+10)
		b, err := s.Put(ctx, "text/plain", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		// damage runs query on the blob's chunks and checks that reading
		// the blob then fails with ErrCorrupt.
		damage := func(what, query string, args ...any) {
			t.Helper()
			if _, err := e.DB.W.ExecContext(ctx, e.DB.Rebind(query), args...); err != nil {
				t.Fatal(err)
			}
			_, rc, err := s.Open(ctx, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
				t.Errorf("read of a %s chunk: %v, want ErrCorrupt", what, err)
			}
		}
		bad := bytes.Clone(data[ChunkSize:])
		bad[0] ^= 1
		damage("changed", `UPDATE blob_chunks SET data = ? WHERE blob_id = ? AND seq = 1`, bad, b.ID)
		damage("missing", `DELETE FROM blob_chunks WHERE blob_id = ? AND seq = 1`, b.ID)
	})
}

func TestServe(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		ctx := context.Background()
		s := NewStore(e.DB)
		data := content(9, ChunkSize+77)
		b, err := s.Put(ctx, "text/csv; charset=utf-8", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		serve := func(method, id, name string, hdr ...string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(method, "/api/v1/files/"+id, nil)
			for i := 0; i+1 < len(hdr); i += 2 {
				r.Header.Set(hdr[i], hdr[i+1])
			}
			w := httptest.NewRecorder()
			Serve(w, r, s, id, name)
			return w
		}
		w := serve("GET", b.ID, "../../etc/report 2026.csv")
		etag := `"` + hexSum(data) + `"`
		if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), data) {
			t.Fatalf("GET: %d, %d bytes", w.Code, w.Body.Len())
		}
		for k, v := range map[string]string{
			"Content-Type":        "text/csv; charset=utf-8",
			"Content-Length":      fmt.Sprint(len(data)),
			"ETag":                etag,
			"Content-Disposition": `attachment; filename="report_2026.csv"`,
		} {
			if got := w.Header().Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		w = serve("HEAD", b.ID, "r.csv")
		if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != fmt.Sprint(len(data)) || w.Header().Get("ETag") != etag {
			t.Errorf("HEAD: %d, %d bytes, headers %v", w.Code, w.Body.Len(), w.Header())
		}
		for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
			w = serve("GET", b.ID, "r.csv", "If-None-Match", inm)
			if w.Code != 304 || w.Body.Len() != 0 || w.Header().Get("ETag") != etag {
				t.Errorf("If-None-Match %s: %d, %d bytes", inm, w.Code, w.Body.Len())
			}
		}
		if w = serve("GET", b.ID, "r.csv", "If-None-Match", `"other"`); w.Code != 200 {
			t.Errorf("If-None-Match other: %d", w.Code)
		}
		w = serve("GET", "missing", "r.csv")
		if w.Code != 404 || w.Header().Get("Content-Type") != "application/problem+json" || !strings.Contains(w.Body.String(), `"not_found"`) {
			t.Errorf("missing: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
		}
		// An empty blob serves an empty body with its length and hash.
		empty, err := s.Put(ctx, "", strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		w = serve("GET", empty.ID, "")
		if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "0" ||
			w.Header().Get("Content-Type") != "application/octet-stream" || w.Header().Get("Content-Disposition") != `attachment; filename="download"` {
			t.Errorf("empty: %d %v", w.Code, w.Header())
		}
	})
}

func TestSanitizeFilename(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"report.csv":             "report.csv",
		"":                       "download",
		"...":                    "download",
		".hidden":                "hidden",
		`a"b;c.csv`:              "a_b_c.csv",
		"../../etc/passwd":       "passwd",
		`C:\Users\me\x.csv`:      "x.csv",
		"résumé.pdf":             "r_sum_.pdf",
		"line\r\nbreak":          "line__break",
		strings.Repeat("a", 300): strings.Repeat("a", 200),
	} {
		if got := SanitizeFilename(in); got != want {
			t.Errorf("SanitizeFilename(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSanitizeFilename(f *testing.F) {
	for _, s := range []string{"report.csv", "", "../x", "a\"b", "\x00\xff", "résumé", strings.Repeat("é", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := SanitizeFilename(s)
		if got == "" || len(got) > maxFilename || got[0] == '.' {
			t.Fatalf("SanitizeFilename(%q) = %q", s, got)
		}
		for _, c := range []byte(got) {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
			if !ok {
				t.Fatalf("SanitizeFilename(%q) = %q has %q", s, got, c)
			}
		}
	})
}

func FuzzEtagMatches(f *testing.F) {
	for _, s := range []string{`"abc"`, `W/"abc"`, "*", `"x", "abc"`, "", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = etagMatches(s, `"abc"`)
	})
}
