package httpapi

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/testutil"
)

// sendRaw writes req, as is, to a new connection to addr and reads the
// answer.
func sendRaw(t *testing.T, addr, req string) testutil.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	// The server may answer and close before it has read everything (a
	// 431): write from another goroutine, and ignore its error.
	go func() { _, _ = io.WriteString(c, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%.40q: %v", req, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%.40q: read body: %v", req, err)
	}
	return testutil.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// TestRawRequestsGetProblems sends what a broken client or a scanner
// sends, over a bare connection to the server as kiln serve runs it
// (NewServer and Serve), and checks that every error is a problem: those
// the API answers (unknown path, wrong method, too large, wrong media
// type) and those net/http refuses before any handler runs (a malformed
// request line, Host or header, headers over the limit, an unsupported
// transfer coding or HTTP version). The README lists the answers left as
// net/http writes them: 417 without a body for an unknown Expect, and the
// redirect of a path that is not clean.
func TestRawRequestsGetProblems(t *testing.T) {
	t.Parallel()
	c := newClient(t, make(chan struct{}))
	a, err := New(Config{Jobs: c})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(newServer(t, a), "http://")
	hugeHeader := "X-Big: " + strings.Repeat("a", 80<<10) + "\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
		code      Code
		detail    string // a part of the problem's detail
	}{
		{"headers over the limit", "GET /api/v1/kinds HTTP/1.1\r\nHost: x\r\n" + hugeHeader + "\r\n",
			431, CodeHeadersTooLarge, "limit of 64 KiB"},
		{"malformed request line", "GARBAGE\r\n\r\n", 400, CodeInvalid, "malformed"},
		{"malformed method", "G(T /api/v1/kinds HTTP/1.1\r\nHost: x\r\n\r\n", 400, CodeInvalid, "malformed"},
		{"malformed Host", "GET /api/v1/kinds HTTP/1.1\r\nHost: a b\r\n\r\n", 400, CodeInvalid, "malformed Host header"},
		{"no Host", "GET /api/v1/kinds HTTP/1.1\r\n\r\n", 400, CodeInvalid, "missing required Host header"},
		{"malformed header name", "GET /api/v1/kinds HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400, CodeInvalid, "malformed"},
		{"unsupported transfer coding", "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, CodeNotImplemented, "Transfer-Encoding"},
		{"unsupported HTTP version", "GET /api/v1/kinds HTTP/3.0\r\nHost: x\r\n\r\n", 505, CodeVersionNotSupported, "protocol version"},
		{"request target *", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, CodeInvalid, "not *"},
		{"unknown method on a route", "BREW /api/v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n", 405, CodeMethodNotAllowed, "BREW"},
		{"unknown path", "GET /api/v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404, CodeNotFound, "no route"},
		{"body over the limit", "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n", 413, CodeTooLarge, "limit"},
		{"wrong media type", "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi", 415, CodeUnsupportedMedia, "application/json"},
	} {
		r := sendRaw(t, addr, tc.req)
		if r.Status != tc.status || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %q, want a %d problem: %s", tc.name, r.Status, r.Header.Get("Content-Type"), tc.status, r.Body)
			continue
		}
		var p problem
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Errorf("%s: %v in %s", tc.name, err, r.Body)
			continue
		}
		if p.Status != tc.status || p.Code != tc.code || !strings.Contains(p.Detail, tc.detail) || p.RequestID == "" || r.Header.Get(RequestIDHeader) != p.RequestID {
			t.Errorf("%s: problem %+v (X-Request-ID %q), want code %s and a detail with %q", tc.name, p, r.Header.Get(RequestIDHeader), tc.code, tc.detail)
		}
	}
	// net/http answers an Expect other than 100-continue itself, with no
	// body.
	r := sendRaw(t, addr, "GET /api/v1/kinds HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n")
	if r.Status != http.StatusExpectationFailed || len(r.Body) != 0 {
		t.Errorf("Expect: tea: %d %q %s, want 417 without a body", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	// The mux redirects a path that is not clean to its clean form.
	if r := sendRaw(t, addr, "GET /api/v1//kinds HTTP/1.1\r\nHost: x\r\n\r\n"); r.Status != http.StatusTemporaryRedirect || r.Header.Get("Location") != "/api/v1/kinds" {
		t.Errorf("unclean path: %d %q, want a 307 to /api/v1/kinds", r.Status, r.Header.Get("Location"))
	}
	// A request after a refusal on another connection is served as usual.
	if r := sendRaw(t, addr, "GET /api/v1/kinds HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); r.Status != 200 || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("a good request: %d %s", r.Status, r.Body)
	}
}

// TestRefusalProblemLeavesOtherWritesAlone: only net/http's own refusal
// shape is rewritten, never a response a handler wrote.
func TestRefusalProblemLeavesOtherWritesAlone(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\nno",
		"HTTP/1.1 400 Bad Request\r\nContent-Type: application/problem+json\r\nConnection: close\r\n\r\n{}",
		"HTTP/1.1 418 I'm a teapot\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n418",
		"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
		"{\"body\":\"HTTP/1.1 400 Bad Request\"}",
		"",
	} {
		if b, ok := refusalProblem([]byte(p), 1024); ok {
			t.Errorf("%q rewritten to %q", p, b)
		}
	}
}
