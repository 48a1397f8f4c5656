package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
)

type problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// expectProblem checks that r is a problem with status naming fields.
func expectProblem(t *testing.T, what string, r testutil.Response, status int, fields ...string) {
	t.Helper()
	if r.Status != status || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s: %d %s %s, want %d problem", what, r.Status, r.Header.Get("Content-Type"), r.Body, status)
		return
	}
	p := testutil.Decode[problem](t, r)
	var got []string
	for _, f := range p.Errors {
		got = append(got, f.Field)
	}
	if fmt.Sprint(got) != fmt.Sprint(fields) && len(fields) > 0 {
		t.Errorf("%s: fields %v, want %v (%s)", what, got, fields, r.Body)
	}
}

func TestEndpointsAPI(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		w1 := e.createWebhook("HTTPS://Hooks.Example.COM:8443/in?x=1")
		if w1.URL != "https://hooks.example.com:8443/in?x=1" || len(w1.Secret) != len(SecretPrefix)+43 ||
			w1.SecretHint != w1.Secret[:len(SecretPrefix)+4]+"…" || w1.Description != "test" ||
			w1.Deliveries != fmt.Sprintf("/api/v1/webhooks/%d/deliveries", w1.ID) {
			t.Errorf("created %+v", w1)
		}
		w2 := e.createWebhook("http://127.0.0.1:9/")
		if w2.Secret == w1.Secret {
			t.Error("two endpoints share a secret")
		}

		// GET shows the hint and the breaker, never the secret.
		r := e.Do("GET", fmt.Sprintf("/api/v1/webhooks/%d", w1.ID), "")
		got := testutil.Decode[webhookView](t, r)
		if r.Status != 200 || got.Secret != "" || strings.Contains(string(r.Body), w1.Secret) || got.SecretHint != w1.SecretHint ||
			got.Breaker == nil || got.Breaker.State != "closed" || got.Breaker.Host != "hooks.example.com:8443" {
			t.Errorf("GET: %d %s", r.Status, r.Body)
		}

		// Listing: newest first, paged.
		r = e.Do("GET", "/api/v1/webhooks?limit=1", "")
		page := testutil.Decode[struct {
			Webhooks []webhookView `json:"webhooks"`
			Next     *string       `json:"next"`
		}](t, r)
		if r.Status != 200 || len(page.Webhooks) != 1 || page.Webhooks[0].ID != w2.ID || page.Next == nil || strings.Contains(string(r.Body), w1.Secret) {
			t.Fatalf("page 1: %s", r.Body)
		}
		r = e.Do("GET", "/api/v1/webhooks?limit=1&after="+*page.Next, "")
		page2 := testutil.Decode[struct {
			Webhooks []webhookView `json:"webhooks"`
		}](t, r)
		if len(page2.Webhooks) != 1 || page2.Webhooks[0].ID != w1.ID {
			t.Errorf("page 2: %s", r.Body)
		}
		expectProblem(t, "bad limit", e.Do("GET", "/api/v1/webhooks?limit=0", ""), 400, "limit")
		expectProblem(t, "bad after", e.Do("GET", "/api/v1/webhooks?after=x", ""), 400, "after")
		expectProblem(t, "unknown parameter", e.Do("GET", "/api/v1/webhooks?state=x", ""), 400, "state")

		// Bad input.
		for name, c := range map[string]struct {
			body   string
			status int
			fields []string
		}{
			"ftp":           {`{"url":"ftp://example.com/x"}`, 422, []string{"url"}},
			"no host":       {`{"url":"https:///x"}`, 422, []string{"url"}},
			"relative":      {`{"url":"/hooks"}`, 422, []string{"url"}},
			"credentials":   {`{"url":"https://user:pw@example.com/"}`, 422, []string{"url"}},
			"fragment":      {`{"url":"https://example.com/#x"}`, 422, []string{"url"}},
			"space":         {`{"url":" https://example.com/"}`, 422, []string{"url"}},
			"bad port":      {`{"url":"https://example.com:99999/"}`, 422, []string{"url"}},
			"too long":      {`{"url":"https://example.com/` + strings.Repeat("a", MaxURLLength) + `"}`, 422, []string{"url"}},
			"missing":       {`{"description":"x"}`, 422, []string{"url"}},
			"description":   {`{"url":"https://example.com/","description":"` + strings.Repeat("d", MaxDescriptionLength+1) + `"}`, 422, []string{"description"}},
			"both":          {`{"url":"gopher://x","description":"a\u0000b"}`, 422, []string{"url", "description"}},
			"unknown field": {`{"url":"https://example.com/","secret":"mine"}`, 400, []string{"secret"}},
			"wrong type":    {`{"url":5}`, 400, []string{"url"}},
			"not JSON":      {`{"url":`, 400, nil},
		} {
			expectProblem(t, name, e.Do("POST", "/api/v1/webhooks", c.body), c.status, c.fields...)
		}
		expectProblem(t, "form body", e.Do("POST", "/api/v1/webhooks", `url=x`, "Content-Type", "application/x-www-form-urlencoded"), 415)
		expectProblem(t, "unknown id", e.Do("GET", "/api/v1/webhooks/9999", ""), 404)
		expectProblem(t, "bad id", e.Do("GET", "/api/v1/webhooks/abc", ""), 400, "id")

		// Deleting.
		if r := e.Do("DELETE", fmt.Sprintf("/api/v1/webhooks/%d", w2.ID), ""); r.Status != 204 {
			t.Errorf("DELETE: %d %s", r.Status, r.Body)
		}
		expectProblem(t, "deleted", e.Do("GET", fmt.Sprintf("/api/v1/webhooks/%d", w2.ID), ""), 404)
		expectProblem(t, "deleted twice", e.Do("DELETE", fmt.Sprintf("/api/v1/webhooks/%d", w2.ID), ""), 404)
	})
}

// TestRegistrationRefusesInternalAddresses: by default an endpoint URL
// naming a non-public address, in any form, is refused with a 422 that
// says why on the url field; allowed ranges are accepted.
func TestRegistrationRefusesInternalAddresses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.SQLite(t), envOpts{publicOnly: true})
	for _, c := range []struct{ url, want string }{
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254, which is link-local"},
		{"http://10.0.0.1/", "10.0.0.1, which is private (RFC 1918)"},
		{"http://172.16.5.4:8080/", "172.16.5.4, which is private"},
		{"http://192.168.0.10/", "192.168.0.10, which is private"},
		{"http://100.64.1.1/", "100.64.1.1, which is shared address space (carrier-grade NAT"},
		{"http://localhost/", "localhost, which is loopback"},
		{"http://localhost./", "localhost., which is loopback"},
		{"https://admin.localhost/", "admin.localhost, which is loopback"},
		{"http://127.0.0.1:9/", "127.0.0.1, which is loopback"},
		{"http://[::1]/", "::1, which is loopback"},
		{"http://0.0.0.0/", "0.0.0.0, which is unspecified"},
		{"http://[::]/", "::, which is unspecified"},
		{"http://2130706433/", "127.0.0.1 (written 2130706433), which is loopback"},
		{"http://0x7f.1/", "127.0.0.1 (written 0x7f.1), which is loopback"},
		{"http://127.1/", "127.0.0.1 (written 127.1), which is loopback"},
		{"http://0177.0.0.1/", "127.0.0.1 (written 0177.0.0.1), which is loopback"},
		{"http://127.0.0.1./", "127.0.0.1 (written 127.0.0.1.), which is loopback"},
		{"http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1, which is loopback (IPv4-mapped 127.0.0.1)"},
		{"http://[::ffff:a9fe:a9fe]/", "::ffff:169.254.169.254 (written ::ffff:a9fe:a9fe), which is link-local"},
		{"http://[fe80::1%25eth0]/", "fe80::1 (written fe80::1%eth0), which is link-local"},
		{"http://[fd00::1]/", "fd00::1, which is unique-local"},
		{"http://[ff02::1]/", "ff02::1, which is multicast"},
		{"http://224.0.0.1/", "224.0.0.1, which is multicast"},
		{"http://255.255.255.255/", "255.255.255.255, which is broadcast"},
		{"http://[64:ff9b::a9fe:a9fe]/", "link-local (NAT64 of 169.254.169.254)"},
		{"http://[2002:7f00:1::]/", "loopback (6to4 of 127.0.0.1)"},
		{"http://\uff11\uff12\uff17.0.0.1/", "which is loopback"},
		{"http://1.2.3.4.5/", "looks like an IPv4 address but is not a valid one"},
	} {
		r := e.Do("POST", "/api/v1/webhooks", fmt.Sprintf(`{"url":%q}`, c.url))
		expectProblem(t, c.url, r, 422, "url")
		if p := testutil.Decode[problem](t, r); len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Message, c.want) ||
			!strings.Contains(p.Errors[0].Message, "--webhook-allow-networks") && !strings.Contains(c.want, "not a valid") {
			t.Errorf("%s: %s, want the url error to say %q", c.url, r.Body, c.want)
		}
	}
	// Names are checked at delivery; public addresses pass.
	for _, u := range []string{"https://hooks.example.com/in", "http://93.184.215.14/", "http://[2606:4700::1]:8443/", "http://1572394766/"} {
		e.createWebhook(u)
	}

	allowed := newEnv(t, dbtest.SQLite(t), envOpts{allow: []netip.Prefix{loopback, netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}})
	for _, u := range []string{"http://10.0.0.1/", "http://0xa000001/", "http://localhost:8080/", "http://127.1/", "http://[::ffff:127.0.0.1]/", "http://[fd00::1]/"} {
		allowed.createWebhook(u)
	}
	expectProblem(t, "192.168.0.1 with others allowed", allowed.Do("POST", "/api/v1/webhooks", `{"url":"http://192.168.0.1/"}`), 422, "url")
}

func TestDeliveriesAPI(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		rc := newReceiver(t, status(200, "ok"))
		wh := rc.register(e, "/")
		path := fmt.Sprintf("/api/v1/webhooks/%d/deliveries", wh.ID)
		for name, c := range map[string]struct {
			body   string
			status int
			fields []string
		}{
			"no event":         {`{"payload":{}}`, 422, []string{"event"}},
			"bad event":        {`{"event":"order confirmed","payload":{}}`, 422, []string{"event"}},
			"dot first":        {`{"event":".x","payload":{}}`, 422, []string{"event"}},
			"long event":       {`{"event":"` + strings.Repeat("e", MaxEventLength+1) + `","payload":{}}`, 422, []string{"event"}},
			"no payload":       {`{"event":"x"}`, 422, []string{"payload"}},
			"null payload":     {`{"event":"x","payload":null}`, 422, []string{"payload"}},
			"array payload":    {`{"event":"x","payload":[1]}`, 422, []string{"payload"}},
			"string payload":   {`{"event":"x","payload":"s"}`, 422, []string{"payload"}},
			"both":             {`{"event":"","payload":1}`, 422, []string{"event", "payload"}},
			"unknown field":    {`{"event":"x","payload":{},"url":"x"}`, 400, []string{"url"}},
			"malformed":        {`{"event":"x","payload":{`, 400, nil},
			"trailing":         {`{"event":"x","payload":{}} {}`, 400, nil},
			"event not string": {`{"event":1,"payload":{}}`, 400, []string{"event"}},
		} {
			expectProblem(t, name, e.Do("POST", path, c.body), c.status, c.fields...)
		}
		expectProblem(t, "unknown webhook", e.Do("POST", "/api/v1/webhooks/9999/deliveries", `{"event":"x","payload":{}}`), 404)
		expectProblem(t, "list of unknown webhook", e.Do("GET", "/api/v1/webhooks/9999/deliveries", ""), 404)
		expectProblem(t, "unknown delivery", e.Do("GET", "/api/v1/webhook-deliveries/9999", ""), 404)
		expectProblem(t, "bad delivery id", e.Do("GET", "/api/v1/webhook-deliveries/0", ""), 400, "id")

		var ids []int64
		for i := range 3 {
			d := e.deliver(wh.ID, fmt.Sprintf("thing.%d", i), fmt.Sprintf(`{"n":%d}`, i))
			if string(d.Payload) != fmt.Sprintf(`{"n":%d}`, i) || d.Attempts == nil || len(d.Attempts) != 0 || d.WebhookID != wh.ID {
				t.Errorf("202 answer %+v", d)
			}
			ids = append(ids, d.ID)
			e.waitJob(d.JobID)
		}
		r := e.Do("GET", path+"?limit=2", "")
		var page struct {
			Deliveries []deliveryView `json:"deliveries"`
			Next       *string        `json:"next"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil || r.Status != 200 {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		if len(page.Deliveries) != 2 || page.Deliveries[0].ID != ids[2] || page.Deliveries[1].ID != ids[1] || page.Next == nil {
			t.Fatalf("page 1: %s", r.Body)
		}
		if d := page.Deliveries[0]; d.Status != "delivered" || d.AttemptCount != 1 || d.Event != "thing.2" || d.Attempts != nil || d.Payload != nil {
			t.Errorf("listed delivery %s", r.Body)
		}
		r = e.Do("GET", path+"?limit=2&after="+*page.Next, "")
		if err := json.Unmarshal(r.Body, &page); err != nil || len(page.Deliveries) != 1 || page.Deliveries[0].ID != ids[0] || page.Next != nil {
			t.Errorf("page 2: %s", r.Body)
		}
		d := e.delivery(ids[0])
		if d.Status != "delivered" || len(d.Attempts) != 1 || d.Attempts[0].ResponseBody != "ok" || d.FinishedAt == nil ||
			d.FinishedAt.Before(d.CreatedAt) || time.Since(d.CreatedAt) > time.Minute {
			t.Errorf("delivery %+v", d)
		}
	})
}

func TestCancelledJobShowsInDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.SQLite(t), envOpts{})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		status(503, "")(n, w, r)
	})
	wh := rc.register(e, "/")
	d := e.deliver(wh.ID, "x", `{}`)
	e.waitDelivery(d.ID, "attempted", func(d deliveryView) bool { return d.AttemptCount == 1 })
	if r := e.Do("POST", fmt.Sprintf("/api/v1/jobs/%d/cancel", d.JobID), ""); r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	if got := e.delivery(d.ID); got.Status != "cancelled" || got.Attempts[0].NextRetryAt != nil {
		t.Errorf("delivery of a cancelled job: %+v", got)
	}
}

func TestOpenAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.SQLite(t), envOpts{})
	if m := e.api.DocMismatches(); len(m) > 0 {
		t.Errorf("OpenAPI document and routes differ:\n%s", strings.Join(m, "\n"))
	}
	r := e.Do("GET", "/api/v1/openapi.json", "")
	for _, s := range []string{`"/api/v1/webhook-deliveries/{id}"`, `"WebhookDeliveryDetail"`, `Kiln-Signature`} {
		if !strings.Contains(string(r.Body), s) {
			t.Errorf("OpenAPI document lacks %s", s)
		}
	}
}

// scopeAuth accepts the tokens "read", "write" and "admin" with those
// scopes.
type scopeAuth struct{}

func (scopeAuth) Authenticate(_ context.Context, token string) (httpapi.Principal, error) {
	s, err := httpapi.ParseScope(token)
	if err != nil {
		return httpapi.Principal{}, httpapi.ErrUnauthenticated
	}
	return httpapi.Principal{TokenID: token, Scope: s}, nil
}

// TestScopes: registering and deleting endpoints need an admin token;
// delivering needs write, reading read.
func TestScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.SQLite(t), envOpts{})
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: e.client, Auth: scopeAuth{}, Modules: []httpapi.Module{NewHandler(e.svc)}}))(t)
	wh := e.createWebhook("https://example.com/")
	for _, c := range []struct {
		method, path, body, token string
		want                      int
	}{
		{"POST", "/api/v1/webhooks", `{"url":"https://example.com/"}`, "write", 403},
		{"POST", "/api/v1/webhooks", `{"url":"https://example.com/"}`, "admin", 201},
		{"DELETE", fmt.Sprintf("/api/v1/webhooks/%d", wh.ID+1), "", "write", 403},
		{"POST", fmt.Sprintf("/api/v1/webhooks/%d/deliveries", wh.ID), `{"event":"x","payload":{}}`, "read", 403},
		{"POST", fmt.Sprintf("/api/v1/webhooks/%d/deliveries", wh.ID), `{"event":"x","payload":{}}`, "write", 202},
		{"GET", fmt.Sprintf("/api/v1/webhooks/%d", wh.ID), "", "read", 200},
		{"GET", "/api/v1/webhooks", "", "", 401},
	} {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s with %q: %d %s, want %d", c.method, c.path, c.token, rec.Code, rec.Body, c.want)
		}
	}
}
