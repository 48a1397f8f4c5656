package reports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

// env is the reports API over a test database and engine client.
type env struct {
	*testutil.Server
	t      *testing.T
	de     *dbtest.Env
	db     *database.DB
	client *queue.Client
	blobs  *blobs.Store
	api    *httpapi.API
}

type envOpts struct {
	start    bool // start the engine (else jobs wait until e.startClient)
	pageSize int  // 0: RegisterKinds with its defaults
}

func newEnv(t *testing.T, de *dbtest.Env, o envOpts) *env {
	t.Helper()
	bs := blobs.NewStore(de.DB)
	w := queue.NewWorkers()
	if o.pageSize == 0 {
		RegisterKinds(w, de.DB, bs)
	} else {
		registerKinds(w, &generator{st: newStore(de.DB), db: de.DB, blobs: bs, pageSize: o.pageSize, now: time.Now})
	}
	c := de.Client(t, queue.Config{
		Workers:          w,
		Queues:           map[string]queue.QueueConfig{queue.DefaultQueue: {MaxWorkers: 2}},
		PollInterval:     20 * time.Millisecond,
		ProgressInterval: time.Nanosecond,
		DefaultRetry:     &queue.RetryPolicy{BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
	}, o.start)
	svc := testutil.Must(NewService(de.DB, c, bs, Options{}))(t)
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Modules: []httpapi.Module{NewHandler(svc)}}))(t)
	return &env{Server: testutil.Serve(t, api), t: t, de: de, db: de.DB, client: c, blobs: bs, api: api}
}

// startClient starts an engine created with start false.
func (e *env) startClient() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.client.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.client.Stop(ctx)
	})
}

type accepted struct {
	ReportID int64  `json:"report_id"`
	JobID    int64  `json:"job_id"`
	Status   string `json:"status"`
	Report   string `json:"report"`
}

// post requests a report and checks the 202 answer.
func (e *env) post(body string) accepted {
	e.t.Helper()
	r := e.Do("POST", "/api/v1/reports", body)
	if r.Status != 202 {
		e.t.Fatalf("POST %s: %d %s", body, r.Status, r.Body)
	}
	a := testutil.Decode[accepted](e.t, r)
	if a.ReportID < 1 || a.JobID < 1 || a.Status != fmt.Sprintf("/api/v1/jobs/%d", a.JobID) ||
		a.Report != fmt.Sprintf("/api/v1/reports/%d", a.ReportID) || r.Header.Get("Location") != a.Status {
		e.t.Fatalf("POST answer %+v, Location %q", a, r.Header.Get("Location"))
	}
	return a
}

type jobView struct {
	State           queue.JobState  `json:"state"`
	Attempt         int             `json:"attempt"`
	Progress        int             `json:"progress"`
	ProgressMessage string          `json:"progress_message"`
	Result          json.RawMessage `json:"result"`
}

// waitJob polls the job until it is final, within a deadline.
func (e *env) waitJob(id int64) jobView {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := e.Do("GET", fmt.Sprintf("/api/v1/jobs/%d", id), "")
		if r.Status != 200 {
			e.t.Fatalf("GET job %d: %d %s", id, r.Status, r.Body)
		}
		j := testutil.Decode[jobView](e.t, r)
		if j.State.Final() {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %d still %s after 30s", id, j.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run requests a report, waits for its job to complete and returns the
// CSV.
func (e *env) run(body string) (accepted, string) {
	e.t.Helper()
	a := e.post(body)
	j := e.waitJob(a.JobID)
	if j.State != queue.StateCompleted {
		e.t.Fatalf("job %d: %+v", a.JobID, j)
	}
	r := e.Do("GET", fmt.Sprintf("/api/v1/reports/%d/download", a.ReportID), "")
	if r.Status != 200 {
		e.t.Fatalf("download: %d %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		e.t.Errorf("Content-Type %q", ct)
	}
	return a, string(r.Body)
}

func (e *env) exec(query string, args ...any) { e.de.Exec(e.t, query, args...) }

func (e *env) count(query string, args ...any) int { return e.de.Count(e.t, query, args...) }

type seedOrder struct {
	user     int64
	status   string
	cents    int64
	currency string
	at       string
}

// seed inserts three users and ten orders across days, months,
// currencies and statuses.
func (e *env) seed() {
	e.t.Helper()
	e.seedUsers()
	e.seedOrders()
}

// seedUsers inserts users 1, 2 and 3.
func (e *env) seedUsers() {
	e.t.Helper()
	now := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	for _, u := range []struct {
		id          int64
		email, name string
	}{
		{1, "alice@example.com", "Alice"},
		{2, "bob@example.com", "Bob"},
		{3, "=carol@example.com", `Carol "CJ", Jr.`},
	} {
		e.exec(`INSERT INTO users (id, email, name, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`, u.id, u.email, u.name, e.db.Time(now), e.db.Time(now))
	}
}

func (e *env) seedOrders() {
	e.t.Helper()
	for _, o := range []seedOrder{
		{1, "pending", 1000, "EUR", "2026-01-05T10:00:00Z"},
		{1, "confirmed", 2550, "EUR", "2026-01-05T23:59:59Z"},
		{1, "cancelled", 9999, "EUR", "2026-01-06T00:00:00Z"},
		{1, "confirmed", 199, "USD", "2026-02-01T00:00:00Z"},
		{2, "confirmed", 5, "EUR", "2026-01-06T12:00:00Z"},
		{2, "pending", 100000, "USD", "2026-02-14T08:30:00Z"},
		{2, "cancelled", 700, "USD", "2026-02-15T00:00:00Z"},
		{3, "confirmed", 1, "GBP", "2026-03-31T23:59:59.999999Z"},
		{3, "pending", 0, "EUR", "2026-03-01T00:00:00Z"},
		{3, "confirmed", 12345, "EUR", "2025-12-31T23:59:59Z"},
	} {
		e.order(o)
	}
}

func (e *env) order(o seedOrder) {
	e.t.Helper()
	at, err := time.Parse(time.RFC3339Nano, o.at)
	if err != nil {
		e.t.Fatal(err)
	}
	e.exec(`INSERT INTO orders (user_id, status, amount_cents, currency, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
		o.user, o.status, o.cents, o.currency, e.db.Time(at), e.db.Time(at))
}

func lines(s ...string) string { return strings.Join(s, "\r\n") + "\r\n" }

func TestReportTotals(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{start: true, pageSize: 3})
		e.seed()
		for _, tc := range []struct {
			name, body, want string
			orders           int
		}{
			{"per user, default statuses", `{"kind":"order_totals","group_by":"user"}`, lines(
				"user_id,email,name,currency,orders,total_cents,total",
				"1,alice@example.com,Alice,EUR,2,3550,35.50",
				"1,alice@example.com,Alice,USD,1,199,1.99",
				"2,bob@example.com,Bob,EUR,1,5,0.05",
				"2,bob@example.com,Bob,USD,1,100000,1000.00",
				`3,'=carol@example.com,"Carol ""CJ"", Jr.",EUR,2,12345,123.45`,
				`3,'=carol@example.com,"Carol ""CJ"", Jr.",GBP,1,1,0.01`,
			), 8},
			{"per month", `{"kind":"order_totals","group_by":"month"}`, lines(
				"period,currency,orders,total_cents,total",
				"2025-12-01T00:00:00Z,EUR,1,12345,123.45",
				"2026-01-01T00:00:00Z,EUR,3,3555,35.55",
				"2026-02-01T00:00:00Z,USD,2,100199,1001.99",
				"2026-03-01T00:00:00Z,EUR,1,0,0.00",
				"2026-03-01T00:00:00Z,GBP,1,1,0.01",
			), 8},
			{"per day, every status, from inclusive, to exclusive",
				`{"kind":"order_totals","group_by":"day","statuses":["cancelled","pending","confirmed"],"from":"2026-01-05T13:00:00+01:00","to":"2026-02-14T08:30:00Z"}`, lines(
					"period,currency,orders,total_cents,total",
					"2026-01-05T00:00:00Z,EUR,1,2550,25.50",
					"2026-01-06T00:00:00Z,EUR,2,10004,100.04",
					"2026-02-01T00:00:00Z,USD,1,199,1.99",
				), 4},
			{"one currency, pending and cancelled", `{"kind":"order_totals","group_by":"user","currency":"USD","statuses":["cancelled","pending","cancelled"]}`, lines(
				"user_id,email,name,currency,orders,total_cents,total",
				"2,bob@example.com,Bob,USD,2,100700,1007.00",
			), 2},
			{"cancelled only, per month", `{"kind":"order_totals","group_by":"month","statuses":["cancelled"]}`, lines(
				"period,currency,orders,total_cents,total",
				"2026-01-01T00:00:00Z,EUR,1,9999,99.99",
				"2026-02-01T00:00:00Z,USD,1,700,7.00",
			), 2},
			{"nothing matches", `{"kind":"order_totals","group_by":"day","currency":"JPY"}`, lines(
				"period,currency,orders,total_cents,total",
			), 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a, csv := e.run(tc.body)
				if csv != tc.want {
					t.Errorf("CSV:\n%s\nwant:\n%s", csv, tc.want)
				}
				rows := strings.Count(tc.want, "\n") - 1
				j := e.waitJob(a.JobID)
				if j.Progress != 100 || j.ProgressMessage != fmt.Sprintf("wrote %d rows from %d orders", rows, tc.orders) {
					t.Errorf("final progress %d %q", j.Progress, j.ProgressMessage)
				}
				var res map[string]any
				if err := json.Unmarshal(j.Result, &res); err != nil {
					t.Fatal(err)
				}
				wantRes := map[string]any{"report_id": float64(a.ReportID), "rows": float64(rows), "download": fmt.Sprintf("/api/v1/reports/%d/download", a.ReportID)}
				if fmt.Sprint(res) != fmt.Sprint(wantRes) {
					t.Errorf("job result %v, want %v", res, wantRes)
				}
				r := e.Do("GET", a.Report, "")
				if r.Status != 200 {
					t.Fatalf("GET report: %d %s", r.Status, r.Body)
				}
				rep := testutil.Decode[map[string]any](t, r)
				if rep["state"] != "completed" || rep["row_count"] != float64(rows) || rep["download"] != wantRes["download"] ||
					rep["completed_at"] == nil || rep["job_id"] != float64(a.JobID) || rep["progress"] != 100.0 || rep["kind"] != "order_totals" {
					t.Errorf("report: %s", r.Body)
				}
			})
		}
	})
}

func TestReportParamsAreNormalized(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		a := e.post(`{"kind":"order_totals","group_by":"day","from":"2026-01-05T13:00:00.1234567+01:00","statuses":["confirmed","pending","confirmed"],"currency":"EUR"}`)
		r := e.Do("GET", a.Report, "")
		var rep struct {
			Params   json.RawMessage `json:"params"`
			State    string          `json:"state"`
			Download *string         `json:"download"`
			RowCount *int64          `json:"row_count"`
			Done     *time.Time      `json:"completed_at"`
		}
		if err := json.Unmarshal(r.Body, &rep); err != nil {
			t.Fatal(err)
		}
		var p map[string]any
		if err := json.Unmarshal(rep.Params, &p); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"kind": "order_totals", "group_by": "day", "from": "2026-01-05T12:00:00.123456Z", "statuses": []any{"pending", "confirmed"}, "currency": "EUR"}
		if fmt.Sprint(p) != fmt.Sprint(want) {
			t.Errorf("params %v, want %v", p, want)
		}
		if rep.State != "available" || rep.Download != nil || rep.RowCount != nil || rep.Done != nil {
			t.Errorf("a report whose job has not run: %s", r.Body)
		}
		// The default statuses leave cancelled orders out.
		a = e.post(`{"kind":"order_totals","group_by":"user"}`)
		if r := e.Do("GET", a.Report, ""); !strings.Contains(string(r.Body), `"statuses":["pending","confirmed"]`) {
			t.Errorf("default statuses: %s", r.Body)
		}
	})
}

// TestDownloadBeforeCompletion requests a report on an engine that is not
// running, so its job cannot run yet, then starts it.
func TestDownloadBeforeCompletion(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		e.seed()
		a := e.post(`{"kind":"order_totals","group_by":"month"}`)
		r := e.Do("GET", fmt.Sprintf("/api/v1/reports/%d/download", a.ReportID), "")
		if r.Status != 409 || r.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.Body), `"conflict"`) {
			t.Errorf("download before completion: %d %s", r.Status, r.Body)
		}
		e.startClient()
		if j := e.waitJob(a.JobID); j.State != queue.StateCompleted {
			t.Fatalf("job: %+v", j)
		}
		r = e.Do("GET", fmt.Sprintf("/api/v1/reports/%d/download", a.ReportID), "")
		if r.Status != 200 || !strings.HasPrefix(string(r.Body), "period,currency,orders,total_cents,total\r\n2025-12-01T00:00:00Z,EUR,1,12345,123.45\r\n") {
			t.Fatalf("download: %d %s", r.Status, r.Body)
		}
		if cd := r.Header.Get("Content-Disposition"); cd != fmt.Sprintf(`attachment; filename="report-%d-order_totals-by-month.csv"`, a.ReportID) {
			t.Errorf("Content-Disposition %q", cd)
		}
		etag := r.Header.Get("ETag")
		if r := e.Do("GET", fmt.Sprintf("/api/v1/reports/%d/download", a.ReportID), "", "If-None-Match", etag); r.Status != 304 || len(r.Body) != 0 {
			t.Errorf("If-None-Match: %d %s", r.Status, r.Body)
		}
		if r := e.Do("HEAD", fmt.Sprintf("/api/v1/reports/%d/download", a.ReportID), ""); r.Status != 200 || len(r.Body) != 0 || r.Header.Get("ETag") != etag {
			t.Errorf("HEAD: %d %v", r.Status, r.Header)
		}
	})
}

func TestRetryLeavesNoOrphans(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{pageSize: 4})
		e.seed()
		a := e.post(`{"kind":"order_totals","group_by":"user"}`)
		// An attempt that died after storing part of its file left it
		// linked to the report, unfinished.
		stale, err := e.blobs.Put(context.Background(), csvContentType, strings.NewReader("user_id,email\r\n1,half a"))
		if err != nil {
			t.Fatal(err)
		}
		e.exec(`UPDATE reports SET blob_id = ? WHERE id = ?`, stale.ID, a.ReportID)
		if r := e.Do("GET", fmt.Sprintf("/api/v1/reports/%d/download", a.ReportID), ""); r.Status != 409 {
			t.Errorf("unfinished report with a linked file: %d %s", r.Status, r.Body)
		}
		e.startClient()
		if j := e.waitJob(a.JobID); j.State != queue.StateCompleted {
			t.Fatalf("job: %+v", j)
		}
		if _, err := e.blobs.Stat(context.Background(), stale.ID); !errors.Is(err, blobs.ErrNotFound) {
			t.Errorf("the earlier attempt's file is still there: %v", err)
		}
		if n := e.count(`SELECT count(*) FROM blobs`); n != 1 {
			t.Errorf("%d blobs, want 1", n)
		}
		var blobID string
		if err := e.db.R.QueryRow(e.db.Rebind(`SELECT blob_id FROM reports WHERE id = ?`), a.ReportID).Scan(&blobID); err != nil {
			t.Fatal(err)
		}
		first := e.Do("GET", fmt.Sprintf("/api/v1/reports/%d/download", a.ReportID), "")
		if first.Status != 200 || !strings.Contains(string(first.Body), "2,bob@example.com,Bob,USD,1,100000,1000.00") {
			t.Fatalf("download: %d %s", first.Status, first.Body)
		}
		// Running the job again once the report is finished changes
		// nothing and stores no second file.
		if r := e.Do("POST", fmt.Sprintf("/api/v1/jobs/%d/retry", a.JobID), ""); r.Status != 200 {
			t.Fatalf("retry: %d %s", r.Status, r.Body)
		}
		j := e.waitJob(a.JobID)
		if j.State != queue.StateCompleted || j.Attempt != 2 || !strings.Contains(string(j.Result), `"rows":6`) {
			t.Fatalf("rerun: %+v", j)
		}
		var again string
		if err := e.db.R.QueryRow(e.db.Rebind(`SELECT blob_id FROM reports WHERE id = ?`), a.ReportID).Scan(&again); err != nil {
			t.Fatal(err)
		}
		if again != blobID || e.count(`SELECT count(*) FROM blobs`) != 1 {
			t.Errorf("rerun replaced the file: %s → %s", blobID, again)
		}
	})
}

func TestMissingReportFailsPermanently(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{start: true})
		res, err := e.client.Insert(context.Background(), queue.InsertParams{Kind: KindGenerate, Args: json.RawMessage(`{"report_id":424242}`)})
		if err != nil {
			t.Fatal(err)
		}
		j := e.waitJob(res.Job.ID)
		if j.State != queue.StateFailed || j.Attempt != 1 {
			t.Errorf("job for a missing report: %+v", j)
		}
		// Arguments without a report id are refused at insert.
		if _, err := e.client.Insert(context.Background(), queue.InsertParams{Kind: KindGenerate, Args: json.RawMessage(`{}`)}); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("insert without report_id: %v", err)
		}
	})
}

// TestManyOrders checks totals over enough random orders for many keyset
// pages against an independent computation.
func TestManyOrders(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{start: true, pageSize: 7})
		e.seedUsers()
		rng := rand.New(rand.NewPCG(1, 2))
		statuses := []string{"pending", "confirmed", "cancelled"}
		currencies := []string{"EUR", "USD", "GBP"}
		var all []seedOrder
		base := time.Date(2025, 11, 20, 0, 0, 0, 0, time.UTC)
		for range 150 {
			o := seedOrder{
				user:     1 + rng.Int64N(3),
				status:   statuses[rng.IntN(3)],
				cents:    rng.Int64N(1_000_000),
				currency: currencies[rng.IntN(3)],
				at:       base.Add(time.Duration(rng.Int64N(int64(120 * 24 * time.Hour)))).Truncate(time.Microsecond).Format(time.RFC3339Nano),
			}
			e.order(o)
			all = append(all, o)
		}
		want := func(from, to time.Time, sts []string, cur string) string {
			type key struct{ period, currency string }
			sums, counts := map[key]int64{}, map[key]int64{}
			for _, o := range all {
				at, _ := time.Parse(time.RFC3339Nano, o.at)
				if !slices.Contains(sts, o.status) || (cur != "" && o.currency != cur) || at.Before(from) || !at.Before(to) {
					continue
				}
				k := key{at.Format("2006-01") + "-01T00:00:00Z", o.currency}
				sums[k] += o.cents
				counts[k]++
			}
			keys := make([]key, 0, len(sums))
			for k := range sums {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, func(a, b key) int { return strings.Compare(a.period+a.currency, b.period+b.currency) })
			out := "period,currency,orders,total_cents,total\r\n"
			for _, k := range keys {
				out += fmt.Sprintf("%s,%s,%d,%d,%s\r\n", k.period, k.currency, counts[k], sums[k], big.NewRat(sums[k], 100).FloatString(2))
			}
			return out
		}
		from, to := base.Add(10*24*time.Hour), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		for _, tc := range []struct {
			sts []string
			cur string
		}{
			{[]string{"pending", "confirmed"}, ""},
			{[]string{"cancelled"}, "USD"},
			{[]string{"pending", "confirmed", "cancelled"}, "GBP"},
		} {
			body, _ := json.Marshal(map[string]any{"kind": "order_totals", "group_by": "month", "from": from, "to": to, "statuses": tc.sts, "currency": cond(tc.cur)})
			_, got := e.run(string(body))
			if w := want(from, to, tc.sts, tc.cur); got != w {
				t.Errorf("%v %s:\n%s\nwant:\n%s", tc.sts, tc.cur, got, w)
			}
		}
	})
}

// cond returns s, or nil (JSON null) when it is empty.
func cond(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// recorder records progress.
type recorder struct {
	msgs   []string
	onCall func(n int)
}

func (r *recorder) SetProgress(_ context.Context, percent int, msg string) error {
	r.msgs = append(r.msgs, fmt.Sprintf("%d %s", percent, msg))
	if r.onCall != nil {
		r.onCall(len(r.msgs))
	}
	return nil
}

func TestAggregateProgressAndCancellation(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		e.seed()
		g := &generator{st: newStore(de.DB), db: de.DB, blobs: e.blobs, pageSize: 3, now: time.Now}
		p := Params{Kind: KindOrderTotals, GroupBy: GroupByUser}
		if err := p.Normalize(); err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		gr, scanned, err := g.aggregate(context.Background(), p, rec)
		if err != nil {
			t.Fatal(err)
		}
		if scanned != 8 || len(gr.rows) != 6 {
			t.Errorf("scanned %d orders into %d rows, want 8 and 6", scanned, len(gr.rows))
		}
		want := []string{"0 scanned 0 of 8 orders", "36 scanned 3 of 8 orders", "73 scanned 6 of 8 orders"}
		if !slices.Equal(rec.msgs, want) {
			t.Errorf("progress %q, want %q", rec.msgs, want)
		}
		// Cancelled after the first page: no further page is read.
		ctx, cancel := context.WithCancel(context.Background())
		rec = &recorder{onCall: func(n int) {
			if n == 2 {
				cancel()
			}
		}}
		_, _, err = g.aggregate(ctx, p, rec)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "after 3 of 8 orders") {
			t.Errorf("cancelled aggregate: %v", err)
		}
		if len(rec.msgs) != 2 {
			t.Errorf("progress after cancellation: %q", rec.msgs)
		}
	})
}

func TestValidation(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		for _, tc := range []struct {
			name, body string
			status     int
			fields     []string
		}{
			{"empty object", `{}`, 422, []string{"kind", "group_by"}},
			{"unknown kind and group_by", `{"kind":"sales","group_by":"week"}`, 422, []string{"kind", "group_by"}},
			{"from after to", `{"kind":"order_totals","group_by":"day","from":"2026-02-01T00:00:00Z","to":"2026-01-01T00:00:00Z"}`, 422, []string{"to"}},
			{"from equal to", `{"kind":"order_totals","group_by":"day","from":"2026-02-01T00:00:00Z","to":"2026-02-01T01:00:00+01:00"}`, 422, []string{"to"}},
			{"bad times", `{"kind":"order_totals","group_by":"day","from":"yesterday","to":"2026-13-01T00:00:00Z"}`, 422, []string{"from", "to"}},
			{"lower-case currency", `{"kind":"order_totals","group_by":"day","currency":"eur"}`, 422, []string{"currency"}},
			{"long currency", `{"kind":"order_totals","group_by":"day","currency":"EURO"}`, 422, []string{"currency"}},
			{"empty currency", `{"kind":"order_totals","group_by":"day","currency":""}`, 422, []string{"currency"}},
			{"bad statuses", `{"kind":"order_totals","group_by":"day","statuses":["pending","shipped","Confirmed"]}`, 422, []string{"statuses[1]", "statuses[2]"}},
			{"no statuses", `{"kind":"order_totals","group_by":"day","statuses":[]}`, 422, []string{"statuses"}},
			{"everything", `{"currency":"x","statuses":["x"],"to":"x","from":"x","group_by":"x","kind":"x"}`, 422, []string{"kind", "group_by", "from", "to", "statuses[0]", "currency"}},
			{"bad JSON", `{"kind":`, 400, nil},
			{"unknown field", `{"kind":"order_totals","group_by":"day","colour":"red"}`, 400, []string{"colour"}},
			{"wrong type", `{"kind":"order_totals","group_by":1}`, 400, []string{"group_by"}},
			{"statuses not an array", `{"kind":"order_totals","group_by":"day","statuses":"pending"}`, 400, []string{"statuses"}},
			{"array body", `[]`, 400, nil},
			{"trailing data", `{"kind":"order_totals","group_by":"day"}{}`, 400, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.Do("POST", "/api/v1/reports", tc.body)
				if r.Status != tc.status || r.Header.Get("Content-Type") != "application/problem+json" {
					t.Fatalf("%d %s, want %d", r.Status, r.Body, tc.status)
				}
				var p struct {
					Errors []httpapi.FieldError `json:"errors"`
				}
				if err := json.Unmarshal(r.Body, &p); err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, f := range p.Errors {
					got = append(got, f.Field)
					if f.Message == "" {
						t.Errorf("field %s without a message", f.Field)
					}
				}
				if !slices.Equal(got, tc.fields) {
					t.Errorf("fields %q, want %q (%s)", got, tc.fields, r.Body)
				}
			})
		}
		if r := e.Do("POST", "/api/v1/reports", ""); r.Status != 415 {
			t.Errorf("no body: %d", r.Status)
		}
		if n := e.count(`SELECT count(*) FROM reports`); n != 0 {
			t.Errorf("%d reports stored by rejected requests", n)
		}
	})
}

func TestNotFoundAndBadIDs(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, de *dbtest.Env) {
		e := newEnv(t, de, envOpts{})
		for _, path := range []string{"/api/v1/reports/999", "/api/v1/reports/999/download"} {
			if r := e.Do("GET", path, ""); r.Status != 404 || !strings.Contains(string(r.Body), `"not_found"`) {
				t.Errorf("%s: %d %s", path, r.Status, r.Body)
			}
		}
		for _, id := range []string{"abc", "0", "-1", "99999999999999999999", "1.5"} {
			for _, suffix := range []string{"", "/download"} {
				if r := e.Do("GET", "/api/v1/reports/"+id+suffix, ""); r.Status != 400 || !strings.Contains(string(r.Body), `"field":"id"`) {
					t.Errorf("id %s%s: %d %s", id, suffix, r.Status, r.Body)
				}
			}
		}
		// A finished report whose file was deleted.
		a := e.post(`{"kind":"order_totals","group_by":"day"}`)
		e.exec(`UPDATE reports SET row_count = 0, completed_at = ? WHERE id = ?`, e.db.Time(time.Now()), a.ReportID)
		if r := e.Do("GET", fmt.Sprintf("/api/v1/reports/%d/download", a.ReportID), ""); r.Status != 404 {
			t.Errorf("finished report without a file: %d %s", r.Status, r.Body)
		}
		// A report whose job was pruned still shows.
		if _, err := e.client.Delete(context.Background(), a.JobID); err != nil {
			t.Fatal(err)
		}
		r := e.Do("GET", a.Report, "")
		if rep := testutil.Decode[map[string]any](t, r); r.Status != 200 || rep["state"] != "completed" {
			t.Errorf("report without its job: %d %s", r.Status, r.Body)
		}
	})
}

func TestOpenAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbtest.SQLite(t), envOpts{})
	if m := e.api.DocMismatches(); len(m) > 0 {
		t.Errorf("OpenAPI document and routes differ:\n%s", strings.Join(m, "\n"))
	}
	r := e.Do("GET", "/api/v1/openapi.json", "")
	for _, s := range []string{`"/api/v1/reports/{id}/download"`, `"CreateReport"`, `"ReportAccepted"`} {
		if !strings.Contains(string(r.Body), s) {
			t.Errorf("OpenAPI document lacks %s", s)
		}
	}
}

func TestFormatCentsAndCells(t *testing.T) {
	t.Parallel()
	for c, want := range map[int64]string{0: "0.00", 1: "0.01", 99: "0.99", 100: "1.00", 123456: "1234.56", -5: "-0.05", -100: "-1.00",
		-9223372036854775808: "-92233720368547758.08", 9223372036854775807: "92233720368547758.07"} {
		if got := formatCents(c); got != want {
			t.Errorf("formatCents(%d) = %q, want %q", c, got, want)
		}
	}
	for in, want := range map[string]string{"": "", "Alice": "Alice", "=1+1": "'=1+1", "+x": "'+x", "-x": "'-x", "@x": "'@x", "\tx": "'\tx", "a=b": "a=b"} {
		if got := safeCell(in); got != want {
			t.Errorf("safeCell(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCreate posts arbitrary bodies: never a panic, never a 5xx, and
// whatever is accepted is a valid, normalized report.
func FuzzCreate(f *testing.F) {
	for _, s := range []string{
		`{"kind":"order_totals","group_by":"user"}`,
		`{"kind":"order_totals","group_by":"day","from":"2026-01-01T00:00:00Z","to":"2026-02-01T00:00:00Z","statuses":["cancelled"],"currency":"EUR"}`,
		`{"kind":"order_totals","group_by":"month","from":"0001-01-01T00:00:00Z","to":"9999-12-31T23:59:59.999999999Z"}`,
		`{"kind":"order_totals","group_by":"month","from":"2026-01-01T00:00:00-23:59"}`,
		`{"kind":"order_totals","group_by":"day","statuses":null,"currency":null,"from":null}`,
		`{"kind":"x"}`, `{}`, `[]`, `null`, `"s"`, `{"kind":`, `{"statuses":[1]}`, `{"from":1}`,
		"{\"kind\":\"order_totals\",\"group_by\":\"day\",\"currency\":\"\u00c9UR\"}",
		`{"kind":"order_totals","group_by":"day"}  `,
	} {
		f.Add(s)
	}
	de := dbtest.SQLite(f)
	bs := blobs.NewStore(de.DB)
	w := queue.NewWorkers()
	RegisterKinds(w, de.DB, bs)
	c := de.Client(f, queue.Config{Workers: w}, false)
	svc := testutil.Must(NewService(de.DB, c, bs, Options{}))(f)
	api := testutil.Must(httpapi.New(httpapi.Config{Jobs: c, Modules: []httpapi.Module{NewHandler(svc)}}))(f)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/api/v1/reports", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: %d %s", body, rec.Code, rec.Body)
		}
		if rec.Code != 202 {
			return
		}
		var a accepted
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		st, err := svc.Get(context.Background(), a.ReportID)
		if err != nil {
			t.Fatal(err)
		}
		p := st.Record.Params
		if err := p.Normalize(); err != nil {
			t.Fatalf("%q stored invalid params %+v: %v", body, st.Record.Params, err)
		}
		if fmt.Sprint(p) != fmt.Sprint(st.Record.Params) {
			t.Fatalf("%q stored params %+v, not normalized (%+v)", body, st.Record.Params, p)
		}
	})
}
