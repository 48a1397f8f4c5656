package app_test

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kilnhq/kiln/internal/app"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/images"
	"github.com/kilnhq/kiln/internal/metrics"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/internal/videos"
	"github.com/kilnhq/kiln/internal/webhooks"
	"github.com/kilnhq/kiln/queue"
)

// TestFeatureMetrics: metrics exist before the features are built, so
// webhook deliveries count their attempts by status code and thumbnails
// time themselves in the registry /metrics serves.
func TestFeatureMetrics(t *testing.T) {
	t.Parallel()
	e := dbtest.SQLite(t)
	m := metrics.New(metrics.Options{})
	kinds := &app.Kinds{Webhooks: webhooks.Options{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	base := app.NewBase(e.DB, kinds, m.Registry(), nil)
	w := queue.NewWorkers()
	if err := app.RegisterKinds(w, base); err != nil {
		t.Fatal(err)
	}
	qs := map[string]queue.QueueConfig{}
	for name, n := range app.Queues(2) {
		qs[name] = queue.QueueConfig{MaxWorkers: n}
	}
	qs[queue.DefaultQueue] = queue.QueueConfig{MaxWorkers: 2}
	c := e.Client(t, queue.Config{Workers: w, Queues: qs, PollInterval: 20 * time.Millisecond}, true)
	a, err := app.New(app.Config{Jobs: c, Base: base, NoAuth: true, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	srv := testutil.Serve(t, a.API)

	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	t.Cleanup(receiver.Close)
	ep := testutil.JSONOf[map[string]any](t, srv.Do("POST", "/api/v1/webhooks", fmt.Sprintf(`{"url":%q}`, receiver.URL)), http.StatusCreated)
	srv.Do("POST", fmt.Sprintf("/api/v1/webhooks/%v/deliveries", ep["id"]), `{"event":"ping","payload":{}}`)

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "a.png")
	if err := png.Encode(fw, image.NewRGBA(image.Rect(0, 0, 40, 30))); err != nil {
		t.Fatal(err)
	}
	_ = mw.Close()
	req, _ := http.NewRequest("POST", "/api/v1/images?sizes=16", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if r := srv.Send(req); r.Status != http.StatusAccepted {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}

	find := func(name string, labels map[string]string) *dto.Metric {
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
		metric:
			for _, mt := range f.GetMetric() {
				for _, lp := range mt.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue metric
					}
				}
				return mt
			}
		}
		return nil
	}
	testutil.Eventually(t, "a webhook attempt counted with its status code", func() bool {
		mt := find("kiln_webhook_attempts_total", map[string]string{"code": "202"})
		return mt != nil && mt.GetCounter().GetValue() == 1
	})
	testutil.Eventually(t, "a thumbnail timed", func() bool {
		mt := find("kiln_image_thumbnail_seconds", map[string]string{"outcome": "done"})
		return mt != nil && mt.GetHistogram().GetSampleCount() == 1
	})
	// The queues of the built-in kinds are the features' own.
	for _, q := range []string{images.QueueName, videos.Queue, webhooks.Queue} {
		if _, ok := app.Queues(2)[q]; !ok {
			t.Errorf("app.Queues has no queue %s", q)
		}
	}
}
