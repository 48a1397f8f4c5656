package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// env is the images API over a test database and engine client.
type env struct {
	*testutil.Server
	t      *testing.T
	de     *dbtest.Env
	db     *database.DB
	client *queue.Client
	blobs  *blobs.Store
	svc    *Service
	api    *httpapi.API
}

type envOpts struct {
	start bool // start the engine (else jobs wait)
	opts  Options
	// stored is the thumbnailer's test hook.
	stored func(size int) error
}

func newEnv(t *testing.T, de *dbtest.Env, o envOpts) *env {
	t.Helper()
	bs := blobs.NewStore(de.DB)
	opts, err := o.opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	w := queue.NewWorkers()
	registerKinds(w, &thumbnailer{st: newStore(de.DB), blobs: bs, opts: opts, stored: o.stored})
	c := de.Client(t, queue.Config{
		Workers:          w,
		Queues:           map[string]queue.QueueConfig{QueueName: {MaxWorkers: 1}},
		PollInterval:     20 * time.Millisecond,
		ProgressInterval: time.Nanosecond,
		DefaultRetry:     &queue.RetryPolicy{BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
	}, o.start)
	svc := testutil.Must(NewService(de.DB, c, bs, o.opts))(t)
	// The API's own body limit is left at its default (1 MiB): the
	// upload route sets its own.
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Modules: []httpapi.Module{NewHandler(svc)}}))(t)
	return &env{Server: testutil.Serve(t, api), t: t, de: de, db: de.DB, client: c, blobs: bs, svc: svc, api: api}
}

func (e *env) get(path string) testutil.Response {
	e.t.Helper()
	return e.Do("GET", path, "")
}

// part is one field of a multipart upload.
type part struct {
	name, filename string
	data           []byte
}

func file(name string, data []byte) part { return part{"file", name, data} }
func sizes(s string) part                { return part{"sizes", "", []byte(s)} }

// post uploads parts as multipart/form-data.
func (e *env) post(parts ...part) testutil.Response {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename != "" {
			w, err = mw.CreateFormFile(p.name, p.filename)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := w.Write(p.data); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		e.t.Fatal(err)
	}
	return e.postRaw(mw.FormDataContentType(), body.Bytes())
}

func (e *env) postRaw(contentType string, body []byte) testutil.Response {
	e.t.Helper()
	return e.Do("POST", "/api/v1/images", string(body), "Content-Type", contentType)
}

type variantView struct {
	Size        int    `json:"size"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Bytes       int64  `json:"bytes"`
	ContentType string `json:"content_type"`
	Download    string `json:"download"`
}

type imageView struct {
	ID          int64         `json:"id"`
	Filename    string        `json:"filename"`
	ContentType string        `json:"content_type"`
	Bytes       int64         `json:"bytes"`
	Width       *int          `json:"width"`
	Height      *int          `json:"height"`
	Status      string        `json:"status"`
	Error       *string       `json:"error"`
	Sizes       []int         `json:"sizes"`
	Variants    []variantView `json:"variants"`
	JobID       int64         `json:"job_id"`
	Job         string        `json:"job"`
	Original    *string       `json:"original"`
	CreatedAt   string        `json:"created_at"`
	CompletedAt *string       `json:"completed_at"`
}

// upload posts parts and checks the 202 answer.
func (e *env) upload(parts ...part) imageView {
	e.t.Helper()
	r := e.post(parts...)
	if r.Status != 202 {
		e.t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	img := testutil.Decode[imageView](e.t, r)
	if img.ID < 1 || img.JobID < 1 || img.Job != fmt.Sprintf("/api/v1/jobs/%d", img.JobID) || r.Header.Get("Location") != img.Job ||
		img.Status != "pending" || img.Original == nil || *img.Original != fmt.Sprintf("/api/v1/images/%d/original", img.ID) ||
		img.Width != nil || img.Error != nil || img.Variants == nil || len(img.Variants) != 0 || img.CompletedAt != nil {
		e.t.Fatalf("upload answer %s, Location %q", r.Body, r.Header.Get("Location"))
	}
	return img
}

// waitJob polls job id until it is finished.
func (e *env) waitJob(id int64) *queue.Job { return dbtest.WaitJob(e.t, e.client, id, nil) }

func (e *env) image(id int64) imageView {
	e.t.Helper()
	r := e.get(fmt.Sprintf("/api/v1/images/%d", id))
	if r.Status != 200 {
		e.t.Fatalf("GET image %d: %d %s", id, r.Status, r.Body)
	}
	return testutil.Decode[imageView](e.t, r)
}

// download fetches a variant and decodes it.
func (e *env) download(v variantView) (image.Image, string) {
	e.t.Helper()
	r := e.get(v.Download)
	if r.Status != 200 {
		e.t.Fatalf("GET %s: %d %s", v.Download, r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != v.ContentType || int64(len(r.Body)) != v.Bytes {
		e.t.Errorf("GET %s: Content-Type %q, %d bytes; listed %q, %d bytes", v.Download, ct, len(r.Body), v.ContentType, v.Bytes)
	}
	m, format, err := image.Decode(bytes.NewReader(r.Body))
	if err != nil {
		e.t.Fatalf("decode %s: %v", v.Download, err)
	}
	if m.Bounds().Dx() != v.Width || m.Bounds().Dy() != v.Height {
		e.t.Errorf("%s is %v, listed %dx%d", v.Download, m.Bounds(), v.Width, v.Height)
	}
	return m, format
}

func (e *env) count(query string, args ...any) int { return e.de.Count(e.t, query, args...) }

// problem checks that r is a problem with the status and, if field is
// set, an errors entry naming it; it returns the detail.
func problem(t *testing.T, r testutil.Response, status int, field string) string {
	t.Helper()
	var p struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
		Errors []struct {
			Field string `json:"field"`
		} `json:"errors"`
	}
	if r.Status != status || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("want a %d problem, got %d %s %s", status, r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	if err := json.Unmarshal(r.Body, &p); err != nil || p.Status != status {
		t.Fatalf("problem %s: %v", r.Body, err)
	}
	if field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != field) {
		t.Errorf("problem %s does not name field %q", r.Body, field)
	}
	return p.Detail
}

func TestUploadMakesVariants(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{start: true})
		jpg := encodeJPEG(t, gradient(400, 300))
		up := e.upload(file("../holiday photo.jpg", jpg))
		if up.Filename != "holiday_photo.jpg" || up.ContentType != "image/jpeg" || up.Bytes != int64(len(jpg)) ||
			fmt.Sprint(up.Sizes) != "[128 512 1024]" {
			t.Errorf("upload: %+v", up)
		}
		j := e.waitJob(up.JobID)
		if j.State != queue.StateCompleted || j.Attempt != 1 || j.Queue != QueueName || j.Progress != 100 {
			t.Fatalf("job: %+v", j)
		}
		var res result
		if err := json.Unmarshal(j.Result, &res); err != nil {
			t.Fatal(err)
		}
		if res.ImageID != up.ID || res.Width != 400 || res.Height != 300 || len(res.Variants) != 3 ||
			res.Variants[0].Download != fmt.Sprintf("/api/v1/images/%d/variants/128", up.ID) {
			t.Errorf("job result %s", j.Result)
		}
		img := e.image(up.ID)
		if img.Status != "done" || img.Width == nil || *img.Width != 400 || *img.Height != 300 || img.Error != nil || img.CompletedAt == nil {
			t.Errorf("image: %+v", img)
		}
		// Longest edge = size, aspect kept, never scaled up: 512 and 1024
		// are both the original's 400x300.
		want := "[128:128x96 512:400x300 1024:400x300]"
		var got []string
		for _, v := range img.Variants {
			got = append(got, fmt.Sprintf("%d:%dx%d", v.Size, v.Width, v.Height))
			m, format := e.download(v)
			if format != "jpeg" || v.ContentType != "image/jpeg" {
				t.Errorf("variant %d: %s, %s", v.Size, format, v.ContentType)
			}
			// Left red, right blue, as uploaded.
			b := m.Bounds()
			if !reddish(m.At(1, b.Dy()/2)) || reddish(m.At(b.Dx()-2, b.Dy()/2)) {
				t.Errorf("variant %d: left %v, right %v", v.Size, m.At(1, b.Dy()/2), m.At(b.Dx()-2, b.Dy()/2))
			}
		}
		if fmt.Sprint(got) != want {
			t.Errorf("variants %v, want %v", got, want)
		}
		// The two full-size variants share one file: 1 original + 2.
		if n := e.count(`SELECT count(*) FROM blobs`); n != 3 {
			t.Errorf("%d blobs, want 3", n)
		}
		r := e.get(*img.Original)
		if r.Status != 200 || !bytes.Equal(r.Body, jpg) || r.Header.Get("Content-Type") != "image/jpeg" ||
			r.Header.Get("Content-Disposition") != `attachment; filename="holiday_photo.jpg"` {
			t.Errorf("original: %d %v", r.Status, r.Header)
		}
		// Conditional and HEAD requests come from blobs.Serve.
		req, _ := http.NewRequest("GET", e.URL+img.Variants[0].Download, nil)
		req.Header.Set("If-None-Match", e.get(img.Variants[0].Download).Header.Get("ETag"))
		if r := e.Send(req); r.Status != 304 {
			t.Errorf("If-None-Match: %d", r.Status)
		}
		// The list shows it the same way.
		l := testutil.Decode[struct {
			Images []imageView `json:"images"`
			Next   *string     `json:"next"`
		}](t, e.get("/api/v1/images"))
		if len(l.Images) != 1 || l.Next != nil || !reflect.DeepEqual(l.Images[0], img) {
			t.Errorf("list: %+v\nGET: %+v", l, img)
		}
	})
}

// TestPNGAndGIF: PNG and GIF uploads get PNG variants, with transparency
// kept, in sizes given with the upload.
func TestPNGAndGIF(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{start: true, opts: Options{Sizes: []int{100}}})
		m := gradient(300, 100)
		for x := range 300 { // a transparent top row
			m.Pix[m.PixOffset(x, 0)+3] = 0
			m.Pix[m.PixOffset(x, 0)], m.Pix[m.PixOffset(x, 0)+1], m.Pix[m.PixOffset(x, 0)+2] = 0, 0, 0
		}
		for _, tc := range []struct {
			data        []byte
			contentType string
		}{
			{encodePNG(t, m), "image/png"},
			{encodeGIF(t, gradient(300, 100)), "image/gif"},
		} {
			up := e.upload(sizes(" 32, 64 "), file("x", tc.data))
			if fmt.Sprint(up.Sizes) != "[32 64]" || up.ContentType != tc.contentType {
				t.Errorf("upload: %+v", up)
			}
			if j := e.waitJob(up.JobID); j.State != queue.StateCompleted {
				t.Fatalf("job: %+v", j)
			}
			img := e.image(up.ID)
			var got []string
			for _, v := range img.Variants {
				got = append(got, fmt.Sprintf("%d:%dx%d", v.Size, v.Width, v.Height))
				vm, format := e.download(v)
				if format != "png" || v.ContentType != "image/png" {
					t.Errorf("%s variant %d: %s %s", tc.contentType, v.Size, format, v.ContentType)
				}
				if tc.contentType == "image/png" {
					if _, _, _, a := vm.At(v.Width/2, 0).RGBA(); a == 0xffff {
						t.Errorf("variant %d: the transparent top row is opaque", v.Size)
					}
					if _, _, _, a := vm.At(v.Width/2, v.Height-1).RGBA(); a != 0xffff {
						t.Errorf("variant %d: the bottom row is not opaque", v.Size)
					}
				}
			}
			if fmt.Sprint(got) != "[32:32x11 64:64x21]" {
				t.Errorf("%s variants %v", tc.contentType, got)
			}
		}
	})
}

// TestEXIFOrientation: a landscape JPEG whose EXIF says orientation 6
// (turn 90° clockwise to display) gets portrait variants, its stored
// left side on top.
func TestEXIFOrientation(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{start: true})
		jpg := withOrientation(encodeJPEG(t, gradient(400, 200)), 6)
		up := e.upload(sizes("128,256,512"), file("rotated.jpg", jpg))
		if j := e.waitJob(up.JobID); j.State != queue.StateCompleted {
			t.Fatalf("job: %+v", j)
		}
		img := e.image(up.ID)
		if *img.Width != 200 || *img.Height != 400 {
			t.Errorf("image is %dx%d, want 200x400 as displayed", *img.Width, *img.Height)
		}
		var got []string
		for _, v := range img.Variants {
			got = append(got, fmt.Sprintf("%d:%dx%d", v.Size, v.Width, v.Height))
			m, _ := e.download(v)
			b := m.Bounds()
			top, bottom := m.At(b.Dx()/2, 1), m.At(b.Dx()/2, b.Dy()-2)
			if !reddish(top) || reddish(bottom) {
				t.Errorf("variant %d: top %v, bottom %v; want the stored left (red) on top", v.Size, top, bottom)
			}
		}
		// 512 is above the longest edge: the full image, turned.
		if fmt.Sprint(got) != "[128:64x128 256:128x256 512:200x400]" {
			t.Errorf("variants %v", got)
		}
		// The original is kept as uploaded.
		if r := e.get(*img.Original); !bytes.Equal(r.Body, jpg) {
			t.Errorf("original changed")
		}
	})
}

// TestRefusedContent: a file that is not an image, and images declaring
// too many pixels, fail their job at the first attempt, permanently, and
// the image says why.
func TestRefusedContent(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{start: true})
		for _, tc := range []struct {
			name  string
			data  []byte
			ctype string
			want  string
		}{
			{"text", []byte("just some text\n"), "application/octet-stream", "not an image: the file looks like text/plain; charset=utf-8; send PNG, JPEG or GIF"},
			{"png bomb", pngBomb(100000, 100000), "image/png", "image too large: 100000x100000 pixels; the limit is 20000 pixels a side"},
			{"png over 50 MP", pngBomb(10000, 6000), "image/png", "image too large: 10000x6000 is 60.0 megapixels; the limit is 50.0"},
			{"jpeg bomb", jpegBomb(65000, 65000), "image/jpeg", "image too large: 65000x65000 pixels"},
			{"truncated jpeg", truncated(encodeJPEG(t, gradient(640, 480))), "image/jpeg", "not an image: the jpeg data is malformed"},
		} {
			up := e.upload(file(tc.name, tc.data))
			if up.ContentType != tc.ctype {
				t.Errorf("%s: stored as %s", tc.name, up.ContentType)
			}
			j := e.waitJob(up.JobID)
			if j.State != queue.StateFailed || j.Attempt != 1 || len(j.Errors) != 1 ||
				!strings.Contains(j.Errors[0].Error, tc.want) || !strings.HasPrefix(j.Errors[0].Error, "permanent: ") {
				t.Errorf("%s: job %s, attempt %d, errors %+v", tc.name, j.State, j.Attempt, j.Errors)
			}
			img := e.image(up.ID)
			if img.Status != "failed" || img.Error == nil || !strings.HasPrefix(*img.Error, tc.want) || img.CompletedAt == nil || len(img.Variants) != 0 {
				t.Errorf("%s: image %+v", tc.name, img)
			}
			r := e.get(fmt.Sprintf("/api/v1/images/%d/variants/128", up.ID))
			if d := problem(t, r, 409, ""); !strings.Contains(d, "failed, so it has no variants: "+tc.want) {
				t.Errorf("%s: variant download: %s", tc.name, d)
			}
			if r := e.get(*img.Original); r.Status != 200 || !bytes.Equal(r.Body, tc.data) || r.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("%s: original: %d %s", tc.name, r.Status, r.Header.Get("Content-Type"))
			}
		}
		if n := e.count(`SELECT count(*) FROM image_variants`); n != 0 {
			t.Errorf("%d variant rows", n)
		}
	})
}

func TestUploadErrors(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{opts: Options{MaxUploadBytes: 10 << 10}})
		small := encodePNG(t, gradient(8, 8))
		big := bytes.Repeat([]byte{0x89}, 20<<10)
		for _, tc := range []struct {
			name   string
			parts  []part
			status int
			field  string
			detail string
		}{
			{"too large", []part{file("big.png", big)}, 413, "file", "is larger than the upload limit of 10240 bytes"},
			{"too large after valid sizes", []part{sizes("64"), file("big.png", big)}, 413, "file", "upload limit"},
			{"missing file", []part{sizes("64")}, 400, "file", "is required"},
			{"no parts", nil, 400, "file", "is required"},
			{"empty file", []part{file("e.png", nil)}, 400, "file", "is empty"},
			{"file twice", []part{file("a.png", small), file("b.png", small)}, 400, "file", "is given twice"},
			{"bad sizes after the file", []part{file("a.png", small), sizes("5,64")}, 422, "sizes", "size 5 is out of range"},
			{"bad sizes first", []part{sizes("x"), file("a.png", small)}, 422, "sizes", "must be a whole number"},
			{"sizes twice", []part{sizes("64"), sizes("32")}, 400, "sizes", "is given twice"},
			{"unknown field", []part{file("a.png", small), {"caption", "", []byte("hi")}}, 400, "caption", "unknown field"},
		} {
			r := e.post(tc.parts...)
			if d := problem(t, r, tc.status, tc.field); !strings.Contains(d, tc.detail) {
				t.Errorf("%s: detail %q, want …%s…", tc.name, d, tc.detail)
			}
		}
		for _, tc := range []struct {
			name, ctype, body string
			status            int
		}{
			{"JSON", "application/json", `{"file":"x"}`, 415},
			{"no content type", "", "x", 415},
			{"urlencoded", "application/x-www-form-urlencoded", "file=x", 415},
			{"no boundary", "multipart/form-data", "x", 400},
			{"truncated", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc", 400},
			{"not multipart at all", "multipart/form-data; boundary=b", "hello", 400},
		} {
			problem(t, e.postRaw(tc.ctype, []byte(tc.body)), tc.status, "")
		}
		// Nothing was kept of any refused upload.
		if n := e.count(`SELECT count(*) FROM blobs`); n != 0 {
			t.Errorf("%d blobs left behind", n)
		}
		if n := e.count(`SELECT count(*) FROM images`); n != 0 {
			t.Errorf("%d images stored", n)
		}
	})
}

// TestRouteBodyLimit: the upload route takes bodies past the API's
// default 1 MiB limit, up to its own, and answers 413 past that whether
// the length is declared or not.
func TestRouteBodyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.SQLite(t), envOpts{opts: Options{MaxUploadBytes: 2 << 20}})
	e.upload(file("a.png", bytes.Repeat([]byte("x"), 1536<<10)))
	big := bytes.Repeat([]byte("x"), 3<<20)
	problem(t, e.post(file("a.png", big)), 413, "")
	// Chunked: no Content-Length, so the limit is hit while reading.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile("file", "a.png")
	_, _ = w.Write(big)
	_ = mw.Close()
	req, _ := http.NewRequest("POST", e.URL+"/api/v1/images", io.MultiReader(&body))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if d := problem(t, e.Send(req), 413, "file"); !strings.Contains(d, "larger than the upload limit of 2097152 bytes") {
		t.Errorf("chunked: %s", d)
	}
	if n := e.count(`SELECT count(*) FROM blobs`); n != 1 {
		t.Errorf("%d blobs, want the accepted upload's alone", n)
	}
}

// TestBeforeTheJobRuns reads an image whose job has not run: pending, no
// dimensions, variants not ready; and a cancelled job shows as failed.
func TestBeforeTheJobRuns(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		up := e.upload(file("a.png", encodePNG(t, gradient(40, 20))))
		if img := e.image(up.ID); !reflect.DeepEqual(img, up) {
			t.Errorf("GET %+v\nPOST %+v", img, up)
		}
		for _, tc := range []struct {
			path   string
			status int
			detail string
		}{
			{fmt.Sprintf("/api/v1/images/%d/variants/128", up.ID), 409, "is not ready yet"},
			{fmt.Sprintf("/api/v1/images/%d/variants/100", up.ID), 404, "has no variant of size 100; its sizes are 128, 512, 1024"},
			{fmt.Sprintf("/api/v1/images/%d/variants/99999999999", up.ID), 404, "has no variant of size 99999999999"},
			{fmt.Sprintf("/api/v1/images/%d/variants/abc", up.ID), 400, "size"},
			{fmt.Sprintf("/api/v1/images/%d/variants/0", up.ID), 400, "size"},
			{"/api/v1/images/999", 404, "image 999 does not exist"},
			{"/api/v1/images/999/original", 404, "image 999 does not exist"},
			{"/api/v1/images/999/variants/128", 404, "image 999 does not exist"},
			{"/api/v1/images/x", 400, "id"},
			{"/api/v1/images?limit=0", 400, "limit"},
			{"/api/v1/images?after=x", 400, "after"},
			{"/api/v1/images?size=1", 400, `unknown query parameter "size"`},
		} {
			if d := problem(t, e.get(tc.path), tc.status, ""); !strings.Contains(d, tc.detail) {
				t.Errorf("GET %s: %q, want …%s…", tc.path, d, tc.detail)
			}
		}
		if r := e.get(*up.Original); r.Status != 200 {
			t.Errorf("original before the job: %d", r.Status)
		}
		if _, err := e.client.Cancel(context.Background(), up.JobID); err != nil {
			t.Fatal(err)
		}
		if img := e.image(up.ID); img.Status != "failed" || img.Error == nil || *img.Error != "the thumbnail job was cancelled" {
			t.Errorf("after cancel: %+v", img)
		}
		if _, err := e.client.Delete(context.Background(), up.JobID); err != nil {
			t.Fatal(err)
		}
		if img := e.image(up.ID); img.Status != "failed" || img.Error == nil || *img.Error != "the thumbnail job no longer exists" {
			t.Errorf("after the job is deleted: %+v", img)
		}
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.SQLite(t), envOpts{})
	var ids []int64
	for range 3 {
		ids = append(ids, e.upload(file("a.gif", encodeGIF(t, gradient(4, 4)))).ID)
	}
	type page struct {
		Images []imageView `json:"images"`
		Next   *string     `json:"next"`
	}
	p := testutil.Decode[page](t, e.get("/api/v1/images?limit=2"))
	if len(p.Images) != 2 || p.Images[0].ID != ids[2] || p.Images[1].ID != ids[1] || p.Next == nil {
		t.Fatalf("page 1: %+v", p)
	}
	p = testutil.Decode[page](t, e.get("/api/v1/images?limit=2&after="+*p.Next))
	if len(p.Images) != 1 || p.Images[0].ID != ids[0] || p.Next != nil {
		t.Fatalf("page 2: %+v", p)
	}
}

// TestRetryReusesVariants stops attempts half-way: after a variant's file
// is written but before it is marked ready (as a crash would), and after
// one variant is finished. The retries delete the unfinished file, keep
// the finished variant, and leave one row per size and no stray file.
func TestRetryReusesVariants(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		var calls atomic.Int32
		st := newStore(de.DB)
		var kept string // the finished variant's file when the second attempt stopped
		stored := func(size int) error {
			switch calls.Add(1) {
			case 1:
				return errors.New("the worker died before finishing")
			case 3:
				// Attempt 2 finished its first variant (1024) and wrote the
				// second; stop again.
				v, err := st.variant(context.Background(), 1, 1024)
				if err != nil {
					return err
				}
				kept = v.BlobID
				return errors.New("the worker died again")
			}
			return nil
		}
		e := newEnv(t, de, envOpts{start: true, stored: stored})
		up := e.upload(file("a.jpg", encodeJPEG(t, gradient(2400, 1200))))
		if up.ID != 1 {
			t.Fatalf("image id %d", up.ID)
		}
		j := e.waitJob(up.JobID)
		if j.State != queue.StateCompleted || j.Attempt != 3 {
			t.Fatalf("job: %s, attempt %d, errors %+v", j.State, j.Attempt, j.Errors)
		}
		img := e.image(up.ID)
		var got []string
		for _, v := range img.Variants {
			got = append(got, fmt.Sprintf("%d:%dx%d", v.Size, v.Width, v.Height))
			e.download(v)
		}
		if fmt.Sprint(got) != "[128:128x64 512:512x256 1024:1024x512]" {
			t.Errorf("variants %v", got)
		}
		if v, err := st.variant(context.Background(), 1, 1024); err != nil || v.BlobID != kept || kept == "" {
			t.Errorf("the 1024 variant was not reused: %q, kept %q, %v", v.BlobID, kept, err)
		}
		if n := e.count(`SELECT count(*) FROM image_variants`); n != 3 {
			t.Errorf("%d variant rows", n)
		}
		if n := e.count(`SELECT count(*) FROM blobs`); n != 4 {
			t.Errorf("%d blobs, want the original and three variants", n)
		}
		if n := e.count(`SELECT count(*) FROM blobs WHERE id NOT IN (SELECT blob_id FROM image_variants) AND id NOT IN (SELECT blob_id FROM images)`); n != 0 {
			t.Errorf("%d stray blobs", n)
		}
	})
}

// TestJobArgs: the kind refuses bad arguments at insert, and a job for a
// missing image fails permanently.
func TestJobArgs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.SQLite(t), envOpts{start: true})
	ctx := context.Background()
	for _, args := range []string{`{}`, `{"image_id":0}`, `{"image_id":"1"}`, `{"image_id":1,"x":1}`} {
		if _, err := e.client.Insert(ctx, queue.InsertParams{Kind: KindThumbnail, Args: json.RawMessage(args)}); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("insert %s: %v", args, err)
		}
	}
	res, err := e.client.Insert(ctx, queue.InsertParams{Kind: KindThumbnail, Args: json.RawMessage(`{"image_id":42}`)})
	if err != nil {
		t.Fatal(err)
	}
	if j := e.waitJob(res.Job.ID); j.State != queue.StateFailed || j.Attempt != 1 || j.Queue != QueueName {
		t.Errorf("job for a missing image: %+v", j)
	}
}

func TestOpenAPI(t *testing.T) {
	t.Parallel()
	for _, m := range newEnv(t, dbtest.SQLite(t), envOpts{}).api.DocMismatches() {
		t.Error(m)
	}
}

// FuzzUpload posts arbitrary multipart bodies: never a panic, never a
// 5xx, and every refusal leaves nothing behind.
func FuzzUpload(f *testing.F) {
	seed := func(parts ...part) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		_ = mw.SetBoundary("kiln")
		for _, p := range parts {
			var w io.Writer
			if p.filename != "" {
				w, _ = mw.CreateFormFile(p.name, p.filename)
			} else {
				w, _ = mw.CreateFormField(p.name)
			}
			_, _ = w.Write(p.data)
		}
		_ = mw.Close()
		f.Add(body.Bytes())
	}
	seed(file("a.png", encodePNG(f, gradient(4, 4))))
	seed(sizes("16,32"), file("a.png", []byte("x")))
	seed(file("a", nil))
	seed(sizes("1"))
	seed(part{"other", "", []byte("v")})
	f.Add([]byte("--kiln--\r\n"))
	f.Add([]byte("--kiln\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"))
	de := dbtest.SQLite(f)
	bs := blobs.NewStore(de.DB)
	w := queue.NewWorkers()
	if err := RegisterKinds(w, de.DB, bs, Options{MaxUploadBytes: 1 << 10}); err != nil {
		f.Fatal(err)
	}
	c := de.Client(f, queue.Config{Workers: w}, false)
	svc := testutil.Must(NewService(de.DB, c, bs, Options{MaxUploadBytes: 1 << 10}))(f)
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Modules: []httpapi.Module{NewHandler(svc)}}))(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		var before int
		_ = de.DB.R.QueryRow(`SELECT count(*) FROM blobs`).Scan(&before)
		req := httptest.NewRequest("POST", "/api/v1/images", bytes.NewReader(body))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=kiln")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: %d %s", body, rec.Code, rec.Body)
		}
		var after int
		_ = de.DB.R.QueryRow(`SELECT count(*) FROM blobs`).Scan(&after)
		if rec.Code != 202 && after != before {
			t.Fatalf("%q: refused with %d but %d blobs were added", body, rec.Code, after-before)
		}
		if rec.Code == 202 && after != before+1 {
			t.Fatalf("%q: accepted with %d blobs added", body, after-before)
		}
	})
}

// truncated returns the first half of b.
func truncated(b []byte) []byte { return b[:len(b)/2] }

// jpegAndPNGRegistered keeps image.Decode able to read variants in tests.
var _ = []any{jpeg.Decode, png.Decode}
