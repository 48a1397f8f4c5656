package httpapi

import (
	"errors"
	"testing"
)

// FuzzCreateJob drives the job-create decoder and validator with any
// body: it must never panic and never classify bad input as a 5xx.
func FuzzCreateJob(f *testing.F) {
	for _, s := range []string{
		`{"kind":"noop"}`,
		`{"kind":"noop","args":{"a":[1,2]},"queue":"q","priority":-1000,"run_at":"2030-01-01T00:00:00.5+02:00"}`,
		`{"kind":"noop","run_in_ms":0,"max_attempts":2147483647,"backoff":{"type":"fixed","base_delay_ms":1,"max_delay_ms":1099511627776,"jitter":1},"timeout_ms":1,"unique_key":"x","unique_for_ms":1}`,
		`{"kind":"noop","backoff":{"jitter":1e400}}`,
		`{"kind":"noop","args":null,"backoff":null,"run_at":null}`,
		`{"kind":"nope"}`, `{"kind":""}`, `{"kind":"\u0000"}`, `{}`, `[]`, `null`, `"x"`, `{`, ``, ` `,
		`{"kind":"noop"}garbage`, `{"kind":"noop","priority":1e99}`, `{"kind":"noop","args":"s"}`,
		`{"kind":"noop","run_at":"0000-01-01T00:00:00Z"}`, `{"kind":"noop","max_attempts":-9223372036854775808}`,
	} {
		f.Add([]byte(s))
	}
	c := newClient(f, make(chan struct{}))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, err := parseCreate(body, c.ValidateInsert)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("unclassified error %v", err)
		}
		if StatusOf(e) >= 500 {
			t.Fatalf("status %d for %q: %v", StatusOf(e), body, err)
		}
	})
}

// FuzzListQuery drives the GET /api/v1/jobs query parser with any query
// string: it must never panic and never answer with a 5xx.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{
		"", "state=available", "state=failed,completed&state=running", "kind=a,b&queue=c", "limit=1000",
		"limit=0", "limit=abc", "limit=-1", "limit=99999999999999999999", "after=5", "after=0", "after=x",
		"colour=red", "state=bogus", "%zz", "&&&", "state=", "kind=%00", ";", "limit=1&limit=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := parseList(raw)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || StatusOf(e) != 400 {
				t.Fatalf("%q: %v", raw, err)
			}
			return
		}
		if p.Limit < 1 || p.Limit > maxListLimit || p.AfterID < 0 {
			t.Fatalf("%q parsed to %+v", raw, p)
		}
		for _, s := range p.States {
			if !s.Valid() {
				t.Fatalf("%q: invalid state %q", raw, s)
			}
		}
	})
}
