package orders

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/testutil"
)

var timeFormat = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func TestCreateAndGet(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		userID := e.user("ada@example.com")
		r := e.Do("POST", "/api/v1/orders", `{"user_id":`+itoa(userID)+`,"amount_cents":1999,"currency":"EUR","note":"first line\n\tsecond"}`)
		o := decodeOrder(t, r, http.StatusCreated)
		if want := fmt.Sprintf("/api/v1/orders/%d", o.ID); r.Header.Get("Location") != want {
			t.Errorf("Location %q, want %q", r.Header.Get("Location"), want)
		}
		want := order{ID: o.ID, UserID: userID, Status: "pending", AmountCents: 1999, Currency: "EUR", Note: "first line\n\tsecond",
			CreatedAt: "2026-03-04T04:06:07.123456Z", UpdatedAt: "2026-03-04T04:06:07.123456Z", ConfirmJobID: o.ConfirmJobID}
		if o != want || o.ID < 1 || o.ConfirmJobID < 1 {
			t.Errorf("created %+v, want %+v", o, want)
		}
		got := e.get(o.ID)
		want.ConfirmJobID = 0 // only in the create response
		if got != want {
			t.Errorf("GET %+v, want %+v", got, want)
		}
		var raw map[string]any
		_ = json.Unmarshal(e.Do("GET", "/api/v1/orders/"+itoa(o.ID), "").Body, &raw)
		if _, ok := raw["confirm_job_id"]; ok || raw["confirmed_at"] != nil {
			t.Errorf("GET body %v", raw)
		}
		// Limits, and an absent note.
		big := e.create(`{"user_id":` + itoa(userID) + `,"amount_cents":1000000000000,"currency":"JPY","note":"` + strings.Repeat("é", 1000) + `"}`)
		zero := e.create(`{"user_id":` + itoa(userID) + `,"amount_cents":0,"currency":"XXX"}`)
		if big.AmountCents != 1e12 || zero.AmountCents != 0 || zero.Note != "" || zero.ID <= big.ID {
			t.Errorf("limits: %+v %+v", big, zero)
		}
	})
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		u := itoa(e.user("ada@example.com"))
		for _, tc := range []struct {
			body   string
			fields []string
		}{
			{`{}`, []string{"amount_cents", "currency", "user_id"}},
			{`{"user_id":null,"amount_cents":null,"currency":null,"note":null}`, []string{"amount_cents", "currency", "user_id"}},
			{`{"user_id":0,"amount_cents":1,"currency":"EUR"}`, []string{"user_id"}},
			{`{"user_id":-3,"amount_cents":1,"currency":"EUR"}`, []string{"user_id"}},
			{`{"user_id":` + u + `,"amount_cents":-1,"currency":"EUR"}`, []string{"amount_cents"}},
			{`{"user_id":` + u + `,"amount_cents":1000000000001,"currency":"EUR"}`, []string{"amount_cents"}},
			{`{"user_id":` + u + `,"amount_cents":9223372036854775807,"currency":"EUR"}`, []string{"amount_cents"}},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"eur"}`, []string{"currency"}},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"EURO"}`, []string{"currency"}},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"E1R"}`, []string{"currency"}},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"ÉUR"}`, []string{"currency"}},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":" EUR"}`, []string{"currency"}},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"EUR","note":"` + strings.Repeat("x", 1001) + `"}`, []string{"note"}},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"EUR","note":"a\u0000b"}`, []string{"note"}},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"EUR","note":"a\rb"}`, []string{"note"}},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"EUR","note":"a\u009bb"}`, []string{"note"}},
			{`{"user_id":0,"amount_cents":-1,"currency":"x","note":"\u0007"}`, []string{"amount_cents", "currency", "note", "user_id"}},
			// A user that does not exist is named as user_id.
			{`{"user_id":999999,"amount_cents":1,"currency":"EUR"}`, []string{"user_id"}},
			{`{"user_id":9223372036854775807,"amount_cents":1,"currency":"EUR"}`, []string{"user_id"}},
		} {
			p := testutil.ProblemOf(t, e.Do("POST", "/api/v1/orders", tc.body), http.StatusUnprocessableEntity)
			if got := p.Fields(); !slices.Equal(got, tc.fields) || p.Code != "validation" {
				t.Errorf("%.80s: fields %v, want %v (%+v)", tc.body, got, tc.fields, p)
			}
		}
		for _, tc := range []struct {
			body, field string
			status      int
		}{
			{`{"user_id":` + u + `,"amount_cents":1.5,"currency":"EUR"}`, "amount_cents", 400},
			{`{"user_id":` + u + `,"amount_cents":"100","currency":"EUR"}`, "amount_cents", 400},
			{`{"user_id":` + u + `,"amount_cents":1e400,"currency":"EUR"}`, "amount_cents", 400},
			{`{"user_id":"1","amount_cents":1,"currency":"EUR"}`, "user_id", 400},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":978}`, "currency", 400},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"EUR","status":"confirmed"}`, "status", 400},
			{`{"user_id":` + u + `,"amount_cents":1,"currency":"EUR"`, "", 400},
			{`[{"user_id":1}]`, "", 400},
		} {
			p := testutil.ProblemOf(t, e.Do("POST", "/api/v1/orders", tc.body), tc.status)
			if tc.field != "" && !slices.Equal(p.Fields(), []string{tc.field}) {
				t.Errorf("%s: fields %v, want %s", tc.body, p.Fields(), tc.field)
			}
		}
		e.assertNothingStored()
	})
}

func TestPatch(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		u := itoa(e.user("ada@example.com"))
		o := e.create(`{"user_id":` + u + `,"amount_cents":1,"currency":"EUR","note":"old"}`)
		path := "/api/v1/orders/" + itoa(o.ID)

		e.clock.Advance(time.Second)
		got := decodeOrder(t, e.Do("PATCH", path, `{"note":"new\nnote"}`), http.StatusOK)
		if got.Note != "new\nnote" || got.Status != "pending" || got.UpdatedAt != "2026-03-04T04:06:08.123456Z" || got.CreatedAt != o.CreatedAt {
			t.Errorf("patched note: %+v", got)
		}
		got = decodeOrder(t, e.Do("PATCH", path, `{"note":null}`), http.StatusOK)
		if got.Note != "" {
			t.Errorf("null note: %+v", got)
		}
		// An empty patch changes nothing.
		e.clock.Advance(time.Second)
		if same := decodeOrder(t, e.Do("PATCH", path, `{}`), http.StatusOK); same != got {
			t.Errorf("empty patch: %+v, want %+v", same, got)
		}
		for _, tc := range []struct {
			body   string
			fields []string
		}{
			{`{"status":"confirmed"}`, []string{"status"}},
			{`{"status":"pending"}`, []string{"status"}},
			{`{"status":"CANCELLED"}`, []string{"status"}},
			{`{"status":null}`, []string{"status"}},
			{`{"status":""}`, []string{"status"}},
			{`{"note":"` + strings.Repeat("n", 1001) + `","status":"done"}`, []string{"note", "status"}},
			{`{"note":"\u001b[31m"}`, []string{"note"}},
		} {
			p := testutil.ProblemOf(t, e.Do("PATCH", path, tc.body), http.StatusUnprocessableEntity)
			if !slices.Equal(p.Fields(), tc.fields) {
				t.Errorf("%.60s: fields %v, want %v", tc.body, p.Fields(), tc.fields)
			}
		}
		for _, body := range []string{`{"amount_cents":5}`, `{"user_id":2}`, `{"note":5}`, `{"status":true}`, `{"note":"x"`} {
			testutil.ProblemOf(t, e.Do("PATCH", path, body), http.StatusBadRequest)
		}

		e.clock.Advance(time.Second)
		cancelled := decodeOrder(t, e.Do("PATCH", path, `{"status":"cancelled","note":"changed my mind"}`), http.StatusOK)
		if cancelled.Status != "cancelled" || cancelled.Note != "changed my mind" || cancelled.ConfirmedAt != "" {
			t.Errorf("cancelled: %+v", cancelled)
		}
		// A cancelled order cannot change.
		for _, body := range []string{`{"note":"again"}`, `{"status":"cancelled"}`, `{"note":null}`} {
			p := testutil.ProblemOf(t, e.Do("PATCH", path, body), http.StatusConflict)
			if !strings.Contains(p.Detail, "cancelled") {
				t.Errorf("%s: %+v", body, p)
			}
		}
		if same := decodeOrder(t, e.Do("PATCH", path, `{}`), http.StatusOK); same != cancelled {
			t.Errorf("empty patch of a cancelled order: %+v", same)
		}
		if got := e.get(o.ID); got != cancelled {
			t.Errorf("refused patches changed the order: %+v", got)
		}

		// A confirmed order may be cancelled.
		c := e.create(`{"user_id":` + u + `,"amount_cents":1,"currency":"EUR"}`)
		if err := e.work(`{"order_id":` + itoa(c.ID) + `}`); err != nil {
			t.Fatal(err)
		}
		confirmed := e.get(c.ID)
		got = decodeOrder(t, e.Do("PATCH", "/api/v1/orders/"+itoa(c.ID), `{"status":"cancelled"}`), http.StatusOK)
		if confirmed.Status != "confirmed" || got.Status != "cancelled" || got.ConfirmedAt == "" || got.ConfirmedAt != confirmed.ConfirmedAt {
			t.Errorf("cancel a confirmed order: %+v, was %+v", got, confirmed)
		}
	})
}

func TestDelete(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		userID := e.user("ada@example.com")
		o := e.create(`{"user_id":` + itoa(userID) + `,"amount_cents":1,"currency":"EUR"}`)
		// The user has an order.
		testutil.ProblemOf(t, e.Do("DELETE", "/api/v1/users/"+itoa(userID), ""), http.StatusConflict)
		r := e.Do("DELETE", "/api/v1/orders/"+itoa(o.ID), "")
		if r.Status != http.StatusNoContent || len(r.Body) != 0 {
			t.Fatalf("delete: %d %q", r.Status, r.Body)
		}
		testutil.ProblemOf(t, e.Do("GET", "/api/v1/orders/"+itoa(o.ID), ""), http.StatusNotFound)
		testutil.ProblemOf(t, e.Do("DELETE", "/api/v1/orders/"+itoa(o.ID), ""), http.StatusNotFound)
		testutil.ProblemOf(t, e.Do("PATCH", "/api/v1/orders/"+itoa(o.ID), `{"note":"x"}`), http.StatusNotFound)
		testutil.ProblemOf(t, e.Do("PATCH", "/api/v1/orders/"+itoa(o.ID), `{}`), http.StatusNotFound)
		if r := e.Do("DELETE", "/api/v1/users/"+itoa(userID), ""); r.Status != http.StatusNoContent {
			t.Errorf("delete the user without orders: %d %s", r.Status, r.Body)
		}
	})
}

// listPage fetches a page and returns its orders and next cursor.
func (e *env) listPage(query string) ([]order, *string) {
	e.t.Helper()
	return testutil.Page[order](e.t, e.Do("GET", "/api/v1/orders?"+query, ""), "orders")
}

func orderIDs(os []order) []int64 {
	out := make([]int64, len(os))
	for i, o := range os {
		out[i] = o.ID
	}
	return out
}

func TestList(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		if os, next := e.listPage(""); len(os) != 0 || next != nil {
			t.Fatalf("empty list: %v %v", os, next)
		}
		ada, bob := itoa(e.user("ada@example.com")), itoa(e.user("bob@example.com"))
		// Six orders a minute apart: ada's 0, 2, 4 and bob's 1, 3, 5.
		var all []order
		for i := range 6 {
			u := ada
			if i%2 == 1 {
				u = bob
			}
			all = append(all, e.create(`{"user_id":`+u+`,"amount_cents":`+strconv.Itoa(i)+`,"currency":"EUR"}`))
			e.clock.Advance(time.Minute)
		}
		decodeOrder(t, e.Do("PATCH", "/api/v1/orders/"+itoa(all[1].ID), `{"status":"cancelled"}`), http.StatusOK)
		decodeOrder(t, e.Do("PATCH", "/api/v1/orders/"+itoa(all[2].ID), `{"status":"cancelled"}`), http.StatusOK)
		if err := e.work(`{"order_id":` + itoa(all[3].ID) + `}`); err != nil {
			t.Fatal(err)
		}
		ids := func(is ...int) []int64 {
			var out []int64
			for _, i := range is {
				out = append(out, all[i].ID)
			}
			return out
		}
		// at(i, d) is d after the instant order i was stored at (the
		// clock's reading to the microsecond), in another zone.
		at := func(i int, d ...time.Duration) string {
			t := start.Truncate(time.Microsecond).Add(time.Duration(i) * time.Minute)
			for _, d := range d {
				t = t.Add(d)
			}
			return url.QueryEscape(t.In(time.FixedZone("Y", -7*3600)).Format(time.RFC3339Nano))
		}
		for _, tc := range []struct {
			query string
			want  []int64
		}{
			{"", ids(5, 4, 3, 2, 1, 0)},
			{"user_id=" + ada, ids(4, 2, 0)},
			{"user_id=" + bob, ids(5, 3, 1)},
			{"user_id=999", nil},
			{"status=pending", ids(5, 4, 0)},
			{"status=cancelled", ids(2, 1)},
			{"status=confirmed", ids(3)},
			{"status=confirmed,cancelled", ids(3, 2, 1)},
			{"status=confirmed&status=cancelled", ids(3, 2, 1)},
			{"status=pending,%20pending,,&status=pending", ids(5, 4, 0)},
			{"status=", ids(5, 4, 3, 2, 1, 0)},
			{"status=pending&user_id=" + bob, ids(5)},
			{"created_after=" + at(2), ids(5, 4, 3)},
			{"created_before=" + at(2), ids(1, 0)},
			{"created_after=" + at(1) + "&created_before=" + at(4), ids(3, 2)},
			{"created_after=2026-03-04T04:07:06Z", ids(5, 4, 3, 2, 1)},
			// Bounds are strict, to the nanosecond.
			{"created_after=" + at(2, -time.Nanosecond), ids(5, 4, 3, 2)},
			{"created_before=" + at(2, time.Nanosecond), ids(2, 1, 0)},
			{"created_after=" + at(2, -time.Nanosecond) + "&created_before=" + at(2, time.Nanosecond), ids(2)},
			{"created_after=" + at(2, time.Nanosecond) + "&created_before=" + at(2, -time.Nanosecond), nil},
			{"created_after=2030-01-01T00:00:00Z", nil},
			{"created_before=1970-01-01T00:00:00Z", nil},
			{"created_after=0000-01-01T00:00:00Z", ids(5, 4, 3, 2, 1, 0)},
			{"created_before=0000-01-01T00:00:00Z", nil},
			{"created_before=9999-12-31T23:59:59.999999999-23:59", ids(5, 4, 3, 2, 1, 0)},
			{"user_id=" + ada + "&status=cancelled&created_after=" + at(0), ids(2)},
			{"limit=2", ids(5, 4)},
			{"limit=2&after=" + itoa(all[4].ID), ids(3, 2)},
			{"status=pending&limit=2&after=" + itoa(all[4].ID), ids(0)},
		} {
			os, _ := e.listPage(tc.query)
			if !slices.Equal(orderIDs(os), tc.want) {
				t.Errorf("%s: %v, want %v", tc.query, orderIDs(os), tc.want)
			}
		}
		// Paging through everything.
		var got []int64
		query, pages := "limit=4", 0
		for {
			os, next := e.listPage(query)
			pages++
			got = append(got, orderIDs(os)...)
			if next == nil {
				break
			}
			query = "limit=4&after=" + url.QueryEscape(*next)
		}
		if !slices.Equal(got, ids(5, 4, 3, 2, 1, 0)) || pages != 2 {
			t.Errorf("paged %v in %d pages", got, pages)
		}
		if os, next := e.listPage("limit=6"); len(os) != 6 || next == nil {
			t.Errorf("a full page has no cursor: %v", next)
		} else if os, n := e.listPage("after=" + *next); len(os) != 0 || n != nil {
			t.Errorf("after the last: %v %v", orderIDs(os), n)
		}
		// Listed orders are shown like GET shows them.
		os, _ := e.listPage("status=confirmed")
		if len(os) != 1 || os[0] != e.get(all[3].ID) {
			t.Errorf("listed %+v, got %+v", os, e.get(all[3].ID))
		}
	})
}

func TestListRejects(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d, options{})
		for _, tc := range []struct {
			query  string
			fields []string
		}{
			{"user_id=0", []string{"user_id"}},
			{"user_id=x", []string{"user_id"}},
			{"user_id=1&user_id=2", []string{"user_id"}},
			{"status=shipped", []string{"status"}},
			{"status=pending,Pending", []string{"status"}},
			{"created_after=yesterday", []string{"created_after"}},
			{"created_after=2026-01-02", []string{"created_after"}},
			{"created_before=2026-01-02T15:04:05", []string{"created_before"}},
			{"created_before=2026-01-02T15:04:05Z&created_before=2026-01-02T15:04:05Z", []string{"created_before"}},
			{"user=1&status=pending", []string{"user"}},
		} {
			p := testutil.ProblemOf(t, e.Do("GET", "/api/v1/orders?"+tc.query, ""), http.StatusBadRequest)
			if !slices.Equal(p.Fields(), tc.fields) {
				t.Errorf("%s: fields %v, want %v", tc.query, p.Fields(), tc.fields)
			}
		}
	})
}

func TestOpenAPI(t *testing.T) {
	t.Parallel()
	for _, m := range newEnv(t, dbtest.SQLite(t), options{}).api.DocMismatches() {
		t.Error(m)
	}
}
