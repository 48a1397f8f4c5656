package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLocalAPIOnly: until the API has tokens, only this machine may call
// it; health checks answer everyone.
func TestLocalAPIOnly(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := localAPIOnly(ok)
	for _, tc := range []struct {
		peer, path string
		want       int
	}{
		{"127.0.0.1:5000", "/api/v1/jobs", http.StatusNoContent},
		{"[::1]:5000", "/api/v1/queues", http.StatusNoContent},
		{"10.1.2.3:5000", "/api/v1/jobs", http.StatusForbidden},
		{"[2001:db8::1]:443", "/api/v1/jobs/1", http.StatusForbidden},
		{"garbage", "/api/v1/jobs", http.StatusForbidden},
		{"10.1.2.3:5000", "/healthz", http.StatusNoContent},
		{"10.1.2.3:5000", "/readyz", http.StatusNoContent},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.path, nil)
		r.RemoteAddr = tc.peer
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.peer, tc.path, w.Code, tc.want)
		}
		if w.Code == http.StatusForbidden {
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("%s %s: content type %q, want problem+json", tc.peer, tc.path, ct)
			}
			if !strings.Contains(w.Body.String(), "--unauthenticated-api") {
				t.Errorf("403 body does not say how to allow other hosts: %s", w.Body)
			}
		}
	}
}
