package orders

import (
	"net/http"
	"testing"

	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
)

var bodySeeds = []string{
	`{"user_id":1,"amount_cents":1999,"currency":"EUR","note":"x"}`,
	`{"user_id":1,"amount_cents":0,"currency":"XXX","note":"a\nb\tc"}`,
	`{"user_id":null,"amount_cents":null,"currency":null,"note":null}`,
	`{"user_id":-1,"amount_cents":1000000000001,"currency":"eur","note":"\u0000"}`,
	`{"user_id":9223372036854775808}`, `{"amount_cents":1.5}`, `{"amount_cents":"1"}`, `{"amount_cents":1e3}`,
	`{"note":"x","status":"cancelled"}`, `{"status":"confirmed"}`, `{"status":null}`, `{"note":null}`, `{"note":1}`,
	`{"x":1}`, `{}`, `[]`, `null`, `""`, `{`, ``, ` `, `{} {}`, "{\"note\":\"\xff\"}", `{"currency":"\u00c9UR"}`,
}

// FuzzCreateOrder drives the create decoder and validation with any
// body: no panic, and never a 5xx.
func FuzzCreateOrder(f *testing.F) {
	testutil.FuzzBody(f, bodySeeds, "POST", "/api/v1/orders", httpapi.StatusOf, func(t *testing.T, r *http.Request) error {
		in, err := decodeCreate(r)
		var o Order
		if err == nil {
			o, err = validateCreate(in)
		}
		if err == nil && (o.UserID < 1 || o.AmountCents < 0 || o.AmountCents > MaxAmountCents || !isCurrency(o.Currency)) {
			t.Fatalf("accepted %+v", o)
		}
		return err
	})
}

// FuzzPatchOrder drives the patch decoder and validation with any body.
func FuzzPatchOrder(f *testing.F) {
	testutil.FuzzBody(f, bodySeeds, "PATCH", "/api/v1/orders/1", httpapi.StatusOf, func(t *testing.T, r *http.Request) error {
		in, err := decodePatch(r)
		if err == nil {
			err = validatePatch(in)
		}
		if err == nil && in.Status != nil && *in.Status != string(StatusCancelled) {
			t.Fatalf("accepted status %q", *in.Status)
		}
		return err
	})
}

// FuzzListOrders drives the list query parser with any query string.
func FuzzListOrders(f *testing.F) {
	for _, s := range []string{
		"", "user_id=1", "status=pending,confirmed&status=cancelled", "status=,,", "status=bogus",
		"created_after=2026-01-02T15:04:05Z&created_before=2026-01-02T15:04:05.999999999%2B14:00",
		"created_after=0000-01-01T00:00:00Z", "created_before=9999-12-31T23:59:59Z", "created_after=x",
		"limit=1000&after=5", "limit=0", "after=-1", "user_id=99999999999999999999", "colour=red&b=1", "%zz", ";",
		"limit=1&limit=2",
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
		if p.Limit < 1 || p.Limit > maxListLimit || p.AfterID < 0 || p.UserID < 0 || len(p.Statuses) > 3 {
			t.Fatalf("%q: %+v", raw, p)
		}
		for _, s := range p.Statuses {
			if !s.Valid() {
				t.Fatalf("%q: status %q", raw, s)
			}
		}
	})
}
