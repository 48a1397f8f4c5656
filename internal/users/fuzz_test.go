package users

import (
	"net/http"
	"testing"

	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
)

var bodySeeds = []string{
	`{"email":"ada@example.com","name":"Ada"}`,
	`{"email":" ADA@EXAMPLE.COM ","name":" Ada "}`,
	`{"email":null,"name":null}`, `{"email":"x"}`, `{"name":"\u0000"}`, `{"email":"a@b.c","name":"\u2028"}`,
	`{"email":"\"q\"@example.com","name":"x"}`, `{"email":"a@[1.2.3.4]","name":"x"}`,
	`{"email":1,"name":[]}`, `{"email":"a@b.c","name":"x","extra":1}`,
	`{}`, `[]`, `null`, `""`, `{`, ``, ` `, `{"email":"a@b.c"} x`, "{\"name\":\"\xff\"}",
}

// FuzzCreateUser drives the create decoder and validation with any body:
// no panic, and never a 5xx.
func FuzzCreateUser(f *testing.F) {
	testutil.FuzzBody(f, bodySeeds, "POST", "/api/v1/users", httpapi.StatusOf, func(t *testing.T, r *http.Request) error {
		in, err := decodeCreate(r)
		if err == nil {
			in, err = validateCreate(in)
		}
		// What is accepted is normalized and within the limits.
		if again, aerr := validateCreate(in); err == nil && (aerr != nil || again != in) {
			t.Fatalf("accepted %+v does not validate again: %v", in, aerr)
		}
		return err
	})
}

// FuzzPatchUser drives the patch decoder and validation with any body.
func FuzzPatchUser(f *testing.F) {
	testutil.FuzzBody(f, bodySeeds, "PATCH", "/api/v1/users/1", httpapi.StatusOf, func(t *testing.T, r *http.Request) error {
		in, err := decodePatch(r)
		if err == nil {
			_, err = validatePatch(in)
		}
		return err
	})
}

// FuzzListUsers drives the list query parser with any query string.
func FuzzListUsers(f *testing.F) {
	for _, s := range []string{
		"", "email=a@b.c", "q=ada", "q=%25_%5C", "limit=1000&after=5", "limit=0", "limit=x", "after=0",
		"after=99999999999999999999", "email=", "q=%FF", "q=%00", "colour=red&b=1", "%zz", "&&&", ";", "limit=1&limit=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := parseList(raw)
		if err != nil {
			if s := httpapi.StatusOf(err); s != 400 {
				t.Fatalf("status %d for %q: %v", s, raw, err)
			}
			return
		}
		if p.Limit < 1 || p.Limit > maxListLimit || p.AfterID < 0 {
			t.Fatalf("%q: %+v", raw, p)
		}
	})
}
