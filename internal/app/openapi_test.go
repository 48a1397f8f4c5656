package app_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
)

// probe is one request sent to drive an operation into an answer.
type probe struct {
	token, method, path, contentType, body, what string
	header                                       []string
}

// pathValues are the values tried for each path parameter: unknown, not
// a number, out of range, or malformed.
var pathValues = map[string][]string{
	"id":   {"999999", "abc", "0"},
	"name": {"default", "no%20spaces"},
	"size": {"64", "abc", "999999"},
}

// expand returns path with each parameter replaced by each of its
// values, in every combination.
func expand(t *testing.T, path string) []string {
	out := []string{""}
	for seg := range strings.SplitSeq(strings.TrimPrefix(path, "/"), "/") {
		vals := []string{seg}
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			vals = pathValues[strings.TrimSuffix(name, "}")]
			if vals == nil {
				t.Fatalf("no values to try for the parameter of %s", path)
			}
		}
		var next []string
		for _, p := range out {
			for _, v := range vals {
				next = append(next, p+"/"+v)
			}
		}
		out = next
	}
	return out
}

// TestEveryAnswerIsDocumented drives every operation of the assembled API
// with requests a client gets wrong (no token, too small a scope, unknown
// or malformed ids, no body, malformed or unknown JSON, the wrong media
// type, a malformed Idempotency-Key, an unknown query parameter, a body
// over the limit) and fails on any status the OpenAPI document does not
// list for that operation.
func TestEveryAnswerIsDocumented(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de)
		var doc struct {
			Paths map[string]map[string]struct {
				Scope     string                     `json:"x-kiln-scope"`
				Responses map[string]json.RawMessage `json:"responses"`
			} `json:"paths"`
		}
		if err := json.Unmarshal(e.app.API.Doc(), &doc); err != nil {
			t.Fatal(err)
		}
		read, write, admin := e.token(httpapi.ScopeRead), e.token(httpapi.ScopeWrite), e.token(httpapi.ScopeAdmin)
		for _, pattern := range e.app.API.Patterns() {
			method, tmpl, _ := strings.Cut(pattern, " ")
			if !strings.HasPrefix(tmpl, httpapi.Prefix+"/") {
				continue
			}
			op, ok := doc.Paths[tmpl][strings.ToLower(method)]
			if !ok {
				t.Errorf("%s is not in the document", pattern)
				continue
			}
			var probes []probe
			for _, path := range expand(t, tmpl) {
				probes = append(probes, probe{token: "", method: method, path: path, what: "no token"})
				switch op.Scope {
				case "write":
					probes = append(probes, probe{token: read, method: method, path: path, what: "a read token"})
				case "admin":
					probes = append(probes, probe{token: write, method: method, path: path, what: "a write token"})
				}
				probes = append(probes,
					probe{token: admin, method: method, path: path, what: "no body"},
					probe{token: admin, method: method, path: path + "?bogus=1", what: "an unknown query parameter"},
					probe{token: admin, method: method, path: path + "?limit=0", what: "a bad limit"},
				)
				if method == http.MethodPost || method == http.MethodPatch {
					for _, b := range []struct{ ct, body, what string }{
						{"application/json", "{", "truncated JSON"},
						{"application/json", "{}", "an empty object"},
						{"application/json", `{"nope":1}`, "an unknown field"},
						{"application/json", `[]`, "an array"},
						{"text/plain", "hello", "text"},
						{"application/octet-stream", "\x00\x01", "bytes"},
						{"multipart/form-data", "x", "multipart without a boundary"},
					} {
						probes = append(probes, probe{token: admin, method: method, path: path, contentType: b.ct, body: b.body, what: b.what})
					}
				}
				if method == http.MethodPost {
					probes = append(probes, probe{token: admin, method: method, path: path, contentType: "application/json", body: "{}",
						header: []string{"Idempotency-Key", `"unterminated`}, what: "a malformed Idempotency-Key"})
				}
			}
			for _, p := range probes {
				var header []string
				if p.contentType != "" {
					header = append(header, "Content-Type", p.contentType)
				}
				header = append(header, p.header...)
				resp, body := e.do(p.token, p.method, p.path, p.body, nil, header...)
				check(t, pattern, op.Responses, resp.Status, fmt.Sprintf("%s %s with %s", p.method, p.path, p.what), body)
			}
			// A declared length over the limit, which no client would
			// send in full.
			status := sendOverLimit(t, e.URL, admin, method, expand(t, tmpl)[0])
			check(t, pattern, op.Responses, status, method+" "+tmpl+" with a body over the limit", nil)
		}
	})
}

func check(t *testing.T, pattern string, documented map[string]json.RawMessage, status int, what string, body []byte) {
	t.Helper()
	if _, ok := documented[strconv.Itoa(status)]; !ok {
		keys := make([]string, 0, len(documented))
		for k := range documented {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		t.Errorf("%s: %s answered %d, which the document does not list (%v): %s", pattern, what, status, keys, body)
	}
}

// sendOverLimit sends the head of a request that declares a 1 TiB body
// and returns the status of the answer.
func sendOverLimit(t *testing.T, base, token, method, path string) int {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		method, path, u.Host, token, int64(1)<<40)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s over the limit: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}
