package admin

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/monitor"
)

// run serves a new server with opts (on a free loopback port unless
// opts.Addr says otherwise) until cancel; done receives what Serve
// returned.
func run(t *testing.T, opts Options) (s *Server, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	return s, cancel, served
}

// start serves s until the test ends and returns its base URL.
func start(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s, cancel, done := run(t, opts)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return s, "http://" + s.Addr()
}

func fetch(t *testing.T, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

var gzipMagic = []byte{0x1f, 0x8b}

func TestLoopbackWithoutToken(t *testing.T) {
	t.Parallel()
	s, base := start(t, Options{})
	if host, port, _ := net.SplitHostPort(s.Addr()); host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr %s", s.Addr())
	}
	for _, tc := range []struct {
		path, contains string
	}{
		{"/", "/debug/flightrecorder"},
		{"/debug/", "/debug/heap"},
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile: total"},
		{"/debug/pprof/cmdline", "admin.test"},
		{"/debug/pprof/symbol", "num_symbols"},
		{"/debug/pprof/threadcreate?debug=1", "threadcreate profile"},
	} {
		resp, body := fetch(t, base+tc.path, "")
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tc.contains) {
			t.Errorf("%s: %d %.200q", tc.path, resp.StatusCode, body)
		}
	}
	for _, p := range []string{"heap", "allocs", "goroutine", "mutex", "block", "threadcreate"} {
		resp, body := fetch(t, base+"/debug/pprof/"+p, "")
		if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(body, gzipMagic) {
			t.Errorf("%s: %d %.50q", p, resp.StatusCode, body)
		}
	}
	resp, body := fetch(t, base+"/debug/heap", "")
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(body, gzipMagic) || len(body) < 32 {
		t.Fatalf("heap snapshot: %d %.50q", resp.StatusCode, body)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="heap-`) || !strings.HasSuffix(cd, `.pb.gz"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	resp, body = fetch(t, base+"/debug/flightrecorder", "")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "no flight recorder") {
		t.Errorf("flightrecorder without a recorder: %d %q", resp.StatusCode, body)
	}
	if resp, _ := fetch(t, base+"/nope", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
	resp, err := http.Post(base+"/debug/heap", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /debug/heap: %d", resp.StatusCode)
	}
}

func TestAddresses(t *testing.T) {
	t.Parallel()
	for addr, loopback := range map[string]bool{
		"127.0.0.1:6060":          true,
		"127.1.2.3:0":             true,
		"[::1]:6060":              true,
		"[::ffff:127.0.0.1]:6060": true,
		"localhost:6060":          true,
		"LocalHost:1":             true,
		":6060":                   false,
		"0.0.0.0:6060":            false,
		"[::]:6060":               false,
		"192.168.1.5:6060":        false,
		"10.0.0.1:0":              false,
		"example.com:6060":        false,
		"localhost.example:6060":  false,
	} {
		_, err := New(Options{Addr: addr})
		if (err == nil) != loopback {
			t.Errorf("New(%q) without a token: %v", addr, err)
		}
		if _, err := New(Options{Addr: addr, Token: "s3cret-admin-token"}); err != nil {
			t.Errorf("New(%q) with a token: %v", addr, err)
		}
	}
	for _, addr := range []string{"nohost", "1.2.3.4", "[::1"} {
		if _, err := New(Options{Addr: addr, Token: "t"}); err == nil {
			t.Errorf("New(%q) accepted a malformed address", addr)
		}
	}
	s, err := New(Options{})
	if err != nil || s.Addr() != DefaultAddr {
		t.Errorf("default: %v %v", s, err)
	}
	for _, bad := range []Options{{Token: "has space"}, {Token: "tab\t"}, {Token: "é"}, {MutexFraction: -1}, {BlockRate: -1}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) succeeded", bad)
		}
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	const token = "a-long-random-admin-token"
	_, base := start(t, Options{Token: token})
	for _, path := range []string{"/", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap", "/debug/heap", "/debug/flightrecorder", "/no-such-route"} {
		for _, hdr := range []string{"", "Bearer", "Bearer wrong", "Bearer " + token + "x", "Bearer " + token[:len(token)-1], "Basic " + token, token} {
			resp, _ := fetch(t, base+path, hdr)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s with %q: %d", path, hdr, resp.StatusCode)
			}
		}
	}
	for _, hdr := range []string{"Bearer " + token, "bearer " + token, "Bearer  " + token + " "} {
		resp, _ := fetch(t, base+"/debug/pprof/", hdr)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("with %q: %d", hdr, resp.StatusCode)
		}
	}
	resp, _ := fetch(t, base+"/debug/flightrecorder", "Bearer "+token)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("authenticated flightrecorder without a recorder: %d", resp.StatusCode)
	}
}

func TestCPUProfileAndTrace(t *testing.T) {
	t.Parallel()
	_, base := start(t, Options{})
	stop := make(chan struct{})
	defer close(stop)
	go func() { // something to profile
		x := 0
		for {
			select {
			case <-stop:
				return
			default:
				for i := range 10000 {
					x += i
				}
			}
		}
	}()
	resp, body := fetch(t, base+"/debug/pprof/profile?seconds=1", "")
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(body, gzipMagic) || len(body) < 64 {
		t.Errorf("CPU profile: %d %d bytes %.80q", resp.StatusCode, len(body), body)
	}
	resp, body = fetch(t, base+"/debug/pprof/trace?seconds=1", "")
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(body, []byte("go 1.")) {
		t.Errorf("trace: %d %.80q", resp.StatusCode, body)
	}
}

func TestFlightRecorderDump(t *testing.T) {
	t.Parallel()
	rec, err := monitor.NewFlightRecorder(monitor.FROptions{Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, base := start(t, Options{Recorder: rec})

	// Not recording: the dump fails cleanly.
	resp, body := fetch(t, base+"/debug/flightrecorder", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not recording") {
		t.Errorf("idle recorder: %d %q", resp.StatusCode, body)
	}

	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	defer rec.Stop()
	for range 100 {
		runtime.Gosched()
	}
	resp, body = fetch(t, base+"/debug/flightrecorder", "")
	if resp.StatusCode != http.StatusOK || len(body) <= 16 || !bytes.HasPrefix(body, []byte("go 1.")) {
		t.Fatalf("dump: %d %d bytes %.40q", resp.StatusCode, len(body), body)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="flightrecorder-`) || !strings.HasSuffix(cd, `.trace"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
}

func TestProfileRatesWhileServing(t *testing.T) {
	t.Parallel()
	before := runtime.SetMutexProfileFraction(-1)
	s, cancel, done := run(t, Options{MutexFraction: 7, BlockRate: 10000})
	deadline := time.Now().Add(10 * time.Second)
	for runtime.SetMutexProfileFraction(-1) != 7 {
		if time.Now().After(deadline) {
			t.Fatal("mutex fraction not set while serving")
		}
		time.Sleep(time.Millisecond)
	}
	resp, body := fetch(t, "http://"+s.Addr()+"/", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "mutex fraction: 7") || !strings.Contains(string(body), "block rate: 10000") {
		t.Errorf("index: %d %s", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := runtime.SetMutexProfileFraction(-1); got != before {
		t.Errorf("mutex fraction %d after Serve, want %d", got, before)
	}
}

func TestServeErrors(t *testing.T) {
	t.Parallel()
	s, _ := start(t, Options{})
	taken, err := New(Options{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := taken.Serve(context.Background()); err == nil {
		t.Error("Serve on a taken port succeeded")
	}
	if taken.Addr() != s.Addr() {
		t.Errorf("Addr after a failed listen: %s", taken.Addr())
	}
	// Listen is idempotent.
	if err := s.Listen(); err != nil {
		t.Error(err)
	}
}

func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := s.httpServer()
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Errorf("missing timeouts: %+v", srv)
	}
	// pprof refuses a profile as long as the write timeout.
	if srv.WriteTimeout <= MaxProfileSeconds*time.Second {
		t.Errorf("WriteTimeout %v leaves no room for a %ds profile", srv.WriteTimeout, MaxProfileSeconds)
	}
}

func FuzzAuthorization(f *testing.F) {
	const token = "fuzz-admin-token"
	for _, h := range []string{"", "Bearer " + token, "bearer " + token, "Bearer", "Basic abc", "Bearer " + token + "\x00", " Bearer " + token, "Bearer\t" + token} {
		f.Add(h)
	}
	s, err := New(Options{Token: token})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, hdr string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", hdr)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		scheme, rest, _ := strings.Cut(hdr, " ")
		valid := strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(rest) == token
		switch {
		case rec.Code >= 500:
			t.Fatalf("%q: status %d", hdr, rec.Code)
		case valid != (rec.Code == http.StatusOK):
			t.Fatalf("%q: status %d, token valid %v", hdr, rec.Code, valid)
		}
	})
}

func FuzzNew(f *testing.F) {
	for _, a := range []string{"127.0.0.1:6060", ":6060", "[::1]:0", "localhost:1", "[fe80::1%eth0]:6060", "0.0.0.0:1", "x", "[::ffff:10.0.0.1]:1"} {
		f.Add(a, "")
		f.Add(a, "tok")
	}
	f.Fuzz(func(t *testing.T, addr, token string) {
		s, err := New(Options{Addr: addr, Token: token})
		if err != nil {
			return
		}
		if token != "" {
			return
		}
		// Without a token only a loopback host is accepted.
		host, _, err := net.SplitHostPort(s.Addr())
		if err != nil {
			t.Fatalf("accepted %q: %v", addr, err)
		}
		ip := net.ParseIP(strings.SplitN(host, "%", 2)[0])
		if !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
			t.Fatalf("accepted non-loopback %q without a token", addr)
		}
	})
}

func TestMetricsRoute(t *testing.T) {
	t.Parallel()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "kiln_up 1\n")
	})
	_, base := start(t, Options{Addr: "127.0.0.1:0", Token: "s3cret", Metrics: metrics})
	if resp, _ := fetch(t, base+"/metrics", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d", resp.StatusCode)
	}
	if resp, body := fetch(t, base+"/metrics", "Bearer s3cret"); resp.StatusCode != 200 || string(body) != "kiln_up 1\n" {
		t.Errorf("/metrics: %d %q", resp.StatusCode, body)
	}
	_, bare := start(t, Options{Addr: "127.0.0.1:0"})
	if resp, _ := fetch(t, bare+"/metrics", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics without a metrics handler: %d", resp.StatusCode)
	}
}
