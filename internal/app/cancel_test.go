package app_test

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http/httptest"
	"testing"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/testutil"
)

// TestClientGone sends, on every feature, requests whose client has gone
// away before the service reaches its store (their context is cancelled):
// none is a server error, and nothing is logged at error level.
func TestClientGone(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		logs := &testutil.Logs{}
		a, _ := serveNoAuth(t, de, logs)
		var upload bytes.Buffer
		mw := multipart.NewWriter(&upload)
		fw, _ := mw.CreateFormFile("file", "a.png")
		_, _ = fw.Write([]byte("\x89PNG\r\n\x1a\n not really"))
		_ = mw.Close()
		for _, tc := range []struct {
			method, path, contentType, body string
			// mayFinish: the engine may finish an insert regardless of
			// the context.
			mayFinish bool
		}{
			{"GET", "/api/v1/users", "", "", false},
			{"GET", "/api/v1/users/1", "", "", false},
			{"POST", "/api/v1/users", "application/json", `{"email":"ada@example.com","name":"Ada"}`, false},
			{"PATCH", "/api/v1/users/1", "application/json", `{"name":"Ada"}`, false},
			{"DELETE", "/api/v1/users/1", "", "", false},
			{"GET", "/api/v1/orders", "", "", false},
			{"GET", "/api/v1/orders/1", "", "", false},
			{"POST", "/api/v1/orders", "application/json", `{"user_id":1,"amount_cents":1,"currency":"EUR"}`, false},
			{"POST", "/api/v1/reports", "application/json", `{"kind":"order_totals","group_by":"user"}`, false},
			{"GET", "/api/v1/reports/1", "", "", false},
			{"GET", "/api/v1/reports/1/download", "", "", false},
			{"GET", "/api/v1/images", "", "", false},
			{"GET", "/api/v1/images/1", "", "", false},
			{"POST", "/api/v1/images", mw.FormDataContentType(), upload.String(), false},
			{"GET", "/api/v1/webhooks", "", "", false},
			{"POST", "/api/v1/webhooks", "application/json", `{"url":"https://example.com/hook"}`, false},
			{"GET", "/api/v1/webhooks/1/deliveries", "", "", false},
			{"POST", "/api/v1/webhooks/1/deliveries", "application/json", `{"event":"ping","payload":{}}`, false},
			{"GET", "/api/v1/webhook-deliveries/1", "", "", false},
			{"GET", "/api/v1/videos/1", "", "", false},
			{"POST", "/api/v1/videos", "video/mp4", "not really a video", false},
			{"GET", "/api/v1/jobs", "", "", false},
			{"GET", "/api/v1/jobs/1", "", "", false},
			{"POST", "/api/v1/jobs", "application/json", `{"kind":"order.confirm","args":{"order_id":1}}`, true},
			{"GET", "/api/v1/queues", "", "", false},
		} {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			req := httptest.NewRequestWithContext(ctx, tc.method, tc.path, bytes.NewReader([]byte(tc.body)))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			rec := httptest.NewRecorder()
			a.API.ServeHTTP(rec, req)
			if rec.Code >= 500 || (rec.Code != 499 && !tc.mayFinish) {
				t.Errorf("%s %s with its client gone: %d %s", tc.method, tc.path, rec.Code, rec.Body)
			}
		}
		if errs := logs.Records(t, testutil.Level("ERROR")); len(errs) > 0 {
			t.Errorf("a client that went away was logged as an error: %v", errs)
		}
		if gone := logs.Records(t, testutil.Message("client went away")); len(gone) == 0 {
			t.Error("no request was logged, at debug level, as one whose client went away")
		}
	})
}
