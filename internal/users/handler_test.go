package users

import (
	"context"
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
		e := newEnv(t, d)
		r := e.Do("POST", "/api/v1/users", `{"email":"  Ada.Lovelace@Example.COM ","name":"  Ada Lovelace\t"}`)
		u := decodeUser(t, r, http.StatusCreated)
		if want := fmt.Sprintf("/api/v1/users/%d", u.ID); r.Header.Get("Location") != want {
			t.Errorf("Location %q, want %q", r.Header.Get("Location"), want)
		}
		if u.ID < 1 || u.Email != "ada.lovelace@example.com" || u.Name != "Ada Lovelace" {
			t.Errorf("created %+v", u)
		}
		if want := "2026-03-04T04:06:07.123456Z"; u.CreatedAt != want || u.UpdatedAt != want {
			t.Errorf("times %s %s, want %s (UTC, microseconds)", u.CreatedAt, u.UpdatedAt, want)
		}
		got := decodeUser(t, e.Do("GET", r.Header.Get("Location"), ""), http.StatusOK)
		if got != u {
			t.Errorf("GET %+v, want %+v", got, u)
		}

		// A whole second still shows six fractional digits.
		e.clock.Advance(-123456789 * time.Nanosecond)
		u2 := e.create("b@example.org", "B")
		if u2.CreatedAt != "2026-03-04T04:06:07.000000Z" || u2.ID <= u.ID {
			t.Errorf("second user %+v", u2)
		}
		for _, s := range []string{u2.CreatedAt, u2.UpdatedAt, got.CreatedAt} {
			if !timeFormat.MatchString(s) {
				t.Errorf("time %q is not RFC 3339 UTC with microseconds", s)
			}
		}
	})
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d)
		long := strings.Repeat("a", 250) + "@b.cd" // 255 characters
		for _, tc := range []struct {
			body   string
			fields []string
		}{
			{`{}`, []string{"email", "name"}},
			{`{"email":null,"name":null}`, []string{"email", "name"}},
			{`{"email":"   ","name":"  "}`, []string{"email", "name"}},
			{`{"email":"ada","name":"Ada"}`, []string{"email"}},
			{`{"email":"ada@localhost","name":"Ada"}`, []string{"email"}},
			{`{"email":"ada@example.","name":"Ada"}`, []string{"email"}},
			{`{"email":"a@b@example.com","name":"Ada"}`, []string{"email"}},
			{`{"email":"Ada <ada@example.com>","name":"Ada"}`, []string{"email"}},
			{`{"email":"<ada@example.com>","name":"Ada"}`, []string{"email"}},
			{`{"email":"ada@example.com (work)","name":"Ada"}`, []string{"email"}},
			{`{"email":"ada@example.com, bob@example.com","name":"Ada"}`, []string{"email"}},
			{`{"email":"a da@example.com","name":"Ada"}`, []string{"email"}},
			{`{"email":"ada\u0000@example.com","name":"Ada"}`, []string{"email"}},
			{`{"email":"` + long + `","name":"Ada"}`, []string{"email"}},
			{`{"email":"ada@example.com","name":"` + strings.Repeat("é", 201) + `"}`, []string{"name"}},
			{`{"email":"ada@example.com","name":"Ada\u0000"}`, []string{"name"}},
			{`{"email":"ada@example.com","name":"Ada\nLovelace"}`, []string{"name"}},
			{`{"email":"ada@example.com","name":"A\u0085da"}`, []string{"name"}},
			{`{"email":"nope","name":"\u007f"}`, []string{"email", "name"}},
		} {
			p := testutil.ProblemOf(t, e.Do("POST", "/api/v1/users", tc.body), http.StatusUnprocessableEntity)
			if got := p.Fields(); !slices.Equal(got, tc.fields) || p.Code != "validation" {
				t.Errorf("%s: fields %v, want %v (%+v)", tc.body, got, tc.fields, p)
			}
		}
		// The limits themselves are accepted.
		okEmail := strings.Repeat("a", 249) + "@b.cd" // 254 characters
		e.create(okEmail, strings.Repeat("é", 200))
		e.create("ünïcode@exämple.com", "X")
		if n := countUsers(t, e); n != 2 {
			t.Errorf("%d users stored, want 2", n)
		}
	})
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d)
		u := e.create("ada@example.com", "Ada")
		path := fmt.Sprintf("/api/v1/users/%d", u.ID)
		for _, tc := range []struct {
			method, path, body string
			status             int
			field              string
		}{
			{"POST", "/api/v1/users", `{"email":`, 400, ""},
			{"POST", "/api/v1/users", `{"email":"a@b.cd","name":"A"} {}`, 400, ""},
			{"POST", "/api/v1/users", `[]`, 400, ""},
			{"POST", "/api/v1/users", `{"email":"a@b.cd","name":"A","admin":true}`, 400, "admin"},
			{"POST", "/api/v1/users", `{"email":42,"name":"A"}`, 400, "email"},
			{"PATCH", path, `{"name":7}`, 400, "name"},
			{"PATCH", path, `{"id":7}`, 400, "id"},
			{"PATCH", path, `{"created_at":"2020-01-01T00:00:00Z"}`, 400, "created_at"},
			{"PATCH", path, `{"name":"x"`, 400, ""},
			{"PATCH", path, ``, 415, ""},
		} {
			p := testutil.ProblemOf(t, e.Do(tc.method, tc.path, tc.body), tc.status)
			if tc.field != "" && !slices.Contains(p.Fields(), tc.field) {
				t.Errorf("%s %s: fields %v lack %q", tc.method, tc.body, p.Fields(), tc.field)
			}
		}
		testutil.ProblemOf(t, e.Do("POST", "/api/v1/users", "email=a@b.cd", "Content-Type", "application/x-www-form-urlencoded"), 415)
		if got := decodeUser(t, e.Do("GET", path, ""), 200); got != u {
			t.Errorf("user changed by refused requests: %+v", got)
		}
	})
}

func TestDuplicateEmail(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d)
		e.create("ada@example.com", "Ada")
		p := testutil.ProblemOf(t, e.Do("POST", "/api/v1/users", `{"email":" ADA@example.com","name":"Other"}`), http.StatusConflict)
		if !slices.Equal(p.Fields(), []string{"email"}) || p.Code != "conflict" {
			t.Errorf("duplicate: %+v", p)
		}
		b := e.create("bob@example.com", "Bob")
		p = testutil.ProblemOf(t, e.Do("PATCH", fmt.Sprintf("/api/v1/users/%d", b.ID), `{"email":"Ada@Example.com"}`), http.StatusConflict)
		if !slices.Equal(p.Fields(), []string{"email"}) {
			t.Errorf("patch to a taken email: %+v", p)
		}
		// Keeping one's own email is not a conflict.
		decodeUser(t, e.Do("PATCH", fmt.Sprintf("/api/v1/users/%d", b.ID), `{"email":"BOB@example.com"}`), 200)
	})
}

// listPage fetches a page and returns its users and next cursor.
func (e *env) listPage(query string) ([]user, *string) {
	e.t.Helper()
	return testutil.Page[user](e.t, e.Do("GET", "/api/v1/users?"+query, ""), "users")
}

func ids(us []user) []int64 {
	out := make([]int64, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

func TestListPaging(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d)
		if us, next := e.listPage(""); len(us) != 0 || next != nil {
			t.Fatalf("empty list: %v %v", us, next)
		}
		var want []int64
		for i := range 5 {
			want = append(want, e.create(fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("User %d", i)).ID)
		}
		slices.Reverse(want) // newest first
		all, next := e.listPage("")
		if !slices.Equal(ids(all), want) || next != nil {
			t.Errorf("default page %v next %v, want %v", ids(all), next, want)
		}
		var got []int64
		query := "limit=2"
		pages := 0
		for {
			us, next := e.listPage(query)
			pages++
			got = append(got, ids(us)...)
			if next == nil {
				break
			}
			if len(us) != 2 {
				t.Fatalf("page of %d has a next cursor", len(us))
			}
			query = "limit=2&after=" + url.QueryEscape(*next)
		}
		if !slices.Equal(got, want) || pages != 3 {
			t.Errorf("paged %v in %d pages, want %v in 3", got, pages, want)
		}
		// A full last page has a cursor, and the page after it is empty.
		us, next := e.listPage("limit=5")
		if len(us) != 5 || next == nil || *next != strconv.FormatInt(want[4], 10) {
			t.Fatalf("full page: %v %v", ids(us), next)
		}
		if us, n := e.listPage("after=" + *next); len(us) != 0 || n != nil {
			t.Errorf("after the last: %v %v", ids(us), n)
		}
		if us, _ := e.listPage("limit=1000"); len(us) != 5 {
			t.Errorf("limit=1000: %d", len(us))
		}
	})
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d)
		ada := e.create("ada@example.com", "Ada Lovelace")
		grace := e.create("grace@navy.mil", "Grace Hopper")
		pct := e.create("percent@example.com", "100% real")
		hundred := e.create("hundred@example.com", "100 real")
		under := e.create("a_b@example.com", "Under Score")
		axb := e.create("axb@example.com", "Ax B")
		back := e.create("back@example.com", `Back\slash`)
		uml := e.create("jurgen@example.com", "Jürgen Ölberg")
		for _, tc := range []struct {
			query string
			want  []user
		}{
			{"email=ADA@Example.com", []user{ada}},
			{"email=%20ada@example.com%20", []user{ada}},
			{"email=ada", nil},
			{"q=LOVE", []user{ada}},
			{"q=navy", []user{grace}},
			{"q=NAVY.MIL", []user{grace}},
			{"q=%25", []user{pct}},
			{"q=100", []user{hundred, pct}},
			{"q=_", []user{under}},
			{"q=a_b", []user{under}},
			{"q=AX%20b", []user{axb}},
			{`q=\`, []user{back}},
			{`q=k\s`, []user{back}},
			{"q=ürgen", []user{uml}},
			{"q=j%C3%BCrgen", []user{uml}},
			{"q=", []user{uml, back, axb, under, hundred, pct, grace, ada}},
			{"q=zzz", nil},
			{"q=example&email=ada@example.com", []user{ada}},
			{"q=grace&email=ada@example.com", nil},
			{"q=example.com&limit=2", []user{uml, back}},
		} {
			us, _ := e.listPage(tc.query)
			if !slices.Equal(ids(us), ids(tc.want)) {
				t.Errorf("%s: %v, want %v", tc.query, ids(us), ids(tc.want))
			}
		}
	})
}

func TestListRejects(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d)
		for _, tc := range []struct {
			query  string
			fields []string
		}{
			{"email=", []string{"email"}},
			{"email=a%00b", []string{"email"}},
			{"email=%FF", []string{"email"}},
			{"q=%FF", []string{"q"}},
			{"q=a%00", []string{"q"}},
			{"q=a&q=b", []string{"q"}},
			{"q=" + strings.Repeat("x", 255), []string{"q"}},
			{"zeta=1&Email=x&limit=5", []string{"Email", "zeta"}},
		} {
			p := testutil.ProblemOf(t, e.Do("GET", "/api/v1/users?"+tc.query, ""), http.StatusBadRequest)
			if !slices.Equal(p.Fields(), tc.fields) {
				t.Errorf("%s: fields %v, want %v", tc.query, p.Fields(), tc.fields)
			}
		}
	})
}

func TestPatch(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d)
		u := e.create("ada@example.com", "Ada")
		path := fmt.Sprintf("/api/v1/users/%d", u.ID)

		e.clock.Advance(time.Second)
		got := decodeUser(t, e.Do("PATCH", path, `{"name":"  Ada King "}`), http.StatusOK)
		if got.Name != "Ada King" || got.Email != u.Email || got.CreatedAt != u.CreatedAt || got.UpdatedAt != "2026-03-04T04:06:08.123456Z" {
			t.Errorf("patched name: %+v", got)
		}
		e.clock.Advance(time.Second)
		got = decodeUser(t, e.Do("PATCH", path, `{"email":"Countess@Example.org"}`), http.StatusOK)
		if got.Email != "countess@example.org" || got.Name != "Ada King" || got.UpdatedAt != "2026-03-04T04:06:09.123456Z" {
			t.Errorf("patched email: %+v", got)
		}
		e.clock.Advance(time.Second)
		both := decodeUser(t, e.Do("PATCH", path, `{"email":"a@b.cd","name":"A"}`), http.StatusOK)
		if both.Email != "a@b.cd" || both.Name != "A" {
			t.Errorf("patched both: %+v", both)
		}
		// An empty patch changes nothing, not even updated_at.
		e.clock.Advance(time.Second)
		if same := decodeUser(t, e.Do("PATCH", path, `{}`), http.StatusOK); same != both {
			t.Errorf("empty patch: %+v, want %+v", same, both)
		}
		for _, tc := range []struct {
			body   string
			fields []string
		}{
			{`{"name":null}`, []string{"name"}},
			{`{"email":null}`, []string{"email"}},
			{`{"name":""}`, []string{"name"}},
			{`{"email":"nope","name":"\u0007"}`, []string{"email", "name"}},
			{`{"email":"ok@example.com","name":"` + strings.Repeat("x", 201) + `"}`, []string{"name"}},
		} {
			p := testutil.ProblemOf(t, e.Do("PATCH", path, tc.body), http.StatusUnprocessableEntity)
			if !slices.Equal(p.Fields(), tc.fields) {
				t.Errorf("%s: fields %v, want %v", tc.body, p.Fields(), tc.fields)
			}
		}
		if after := decodeUser(t, e.Do("GET", path, ""), http.StatusOK); after != both {
			t.Errorf("refused patches changed the user: %+v", after)
		}
	})
}

// insertOrder stores an order of user id directly.
func insertOrder(t *testing.T, e *env, userID int64) int64 {
	t.Helper()
	var id int64
	now := e.db.Time(time.Now())
	err := e.db.W.QueryRowContext(context.Background(), e.db.Rebind(
		`INSERT INTO orders (user_id, status, amount_cents, currency, created_at, updated_at) VALUES (?, 'pending', 100, 'EUR', ?, ?) RETURNING id`),
		userID, now, now).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func countUsers(t *testing.T, e *env) int {
	t.Helper()
	var n int
	if err := e.db.R.QueryRowContext(context.Background(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDelete(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, d *dbtest.Env) {
		e := newEnv(t, d)
		ada := e.create("ada@example.com", "Ada")
		bob := e.create("bob@example.com", "Bob")
		r := e.Do("DELETE", fmt.Sprintf("/api/v1/users/%d", bob.ID), "")
		if r.Status != http.StatusNoContent || len(r.Body) != 0 {
			t.Fatalf("delete: %d %q", r.Status, r.Body)
		}
		testutil.ProblemOf(t, e.Do("GET", fmt.Sprintf("/api/v1/users/%d", bob.ID), ""), http.StatusNotFound)
		testutil.ProblemOf(t, e.Do("DELETE", fmt.Sprintf("/api/v1/users/%d", bob.ID), ""), http.StatusNotFound)
		testutil.ProblemOf(t, e.Do("PATCH", fmt.Sprintf("/api/v1/users/%d", bob.ID), `{"name":"X"}`), http.StatusNotFound)
		testutil.ProblemOf(t, e.Do("PATCH", fmt.Sprintf("/api/v1/users/%d", bob.ID), `{}`), http.StatusNotFound)

		order := insertOrder(t, e, ada.ID)
		p := testutil.ProblemOf(t, e.Do("DELETE", fmt.Sprintf("/api/v1/users/%d", ada.ID), ""), http.StatusConflict)
		if !strings.Contains(p.Detail, "has orders") || p.Code != "conflict" {
			t.Errorf("delete with orders: %+v", p)
		}
		decodeUser(t, e.Do("GET", fmt.Sprintf("/api/v1/users/%d", ada.ID), ""), http.StatusOK)
		if _, err := e.db.W.ExecContext(context.Background(), e.db.Rebind("DELETE FROM orders WHERE id = ?"), order); err != nil {
			t.Fatal(err)
		}
		if r := e.Do("DELETE", fmt.Sprintf("/api/v1/users/%d", ada.ID), ""); r.Status != http.StatusNoContent {
			t.Errorf("delete after its orders: %d %s", r.Status, r.Body)
		}
		// The email is free again.
		e.create("ada@example.com", "Ada again")
		if n := countUsers(t, e); n != 1 {
			t.Errorf("%d users, want 1", n)
		}
	})
}

func TestOpenAPI(t *testing.T) {
	t.Parallel()
	for _, m := range newEnv(t, dbtest.SQLite(t)).api.DocMismatches() {
		t.Error(m)
	}
}
