package reports

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/queue"
)

// csvContentType is the content type of a report's file.
const csvContentType = "text/csv; charset=utf-8"

// defaultPageSize is how many orders one keyset page reads.
const defaultPageSize = 5000

// RegisterKinds registers the report.generate kind on w: it generates the
// report named by its arguments ({"report_id":N}) over db and stores the
// CSV in blobs.
func RegisterKinds(w *queue.Workers, db *database.DB, blobs *blobs.Store) {
	registerKinds(w, &generator{st: newStore(db), db: db, blobs: blobs, pageSize: defaultPageSize, now: time.Now})
}

func registerKinds(w *queue.Workers, g *generator) {
	w.Handle(KindGenerate, queue.Typed(g.work))
}

// generator works report.generate jobs.
type generator struct {
	st       *store
	db       *database.DB
	blobs    *blobs.Store
	pageSize int
	now      func() time.Time
}

// progress is what a running job reports; *queue.Job provides it.
type progress interface {
	SetProgress(ctx context.Context, percent int, message string) error
}

// result is a report.generate job's result.
type result struct {
	ReportID int64  `json:"report_id"`
	Rows     int64  `json:"rows"`
	Download string `json:"download"`
}

// work generates one report. The CSV is linked to the report as soon as
// its blob exists and only marked complete at the end, so that an attempt
// that dies leaves a reference the next attempt finds and deletes: a
// retry never leaves an orphan file behind.
func (g *generator) work(ctx context.Context, job *queue.Job, args generateArgs) error {
	r, err := g.st.get(ctx, g.db.R, args.ReportID)
	if errors.Is(err, ErrNotFound) {
		return queue.Permanent(err)
	}
	if err != nil {
		return err
	}
	if r.Complete() {
		// An earlier attempt finished the report but not the job.
		return job.SetResult(result{ReportID: r.ID, Rows: r.RowCount, Download: downloadPath(r.ID)})
	}
	if r.BlobID != "" {
		if err := g.discard(ctx, r.ID, r.BlobID); err != nil {
			return fmt.Errorf("discard the file of an earlier attempt: %w", err)
		}
		job.Logger().Info("deleted the unfinished file of an earlier attempt", "report_id", r.ID, "blob", r.BlobID)
	}
	p := r.Params
	if err := p.Normalize(); err != nil {
		return queue.Permanent(fmt.Errorf("report %d: stored parameters: %w", r.ID, err))
	}
	groups, scanned, err := g.aggregate(ctx, p, job)
	if err != nil {
		return err
	}
	if err := setProgress(ctx, job, 99, fmt.Sprintf("writing %d rows from %d orders", len(groups.rows), scanned)); err != nil {
		return err
	}
	b, err := g.write(ctx, r.ID, groups)
	if err != nil {
		return err
	}
	err = g.db.InTx(ctx, func(tx *sql.Tx) error {
		return g.st.complete(ctx, tx, r.ID, b.ID, int64(len(groups.rows)), database.StoredTime(g.now()))
	})
	if err != nil {
		// Best effort: the next attempt deletes it anyway while the
		// report still points at it.
		if derr := g.discard(context.WithoutCancel(ctx), r.ID, b.ID); derr != nil {
			job.Logger().Warn("could not delete the file of a failed attempt", "report_id", r.ID, "blob", b.ID, "err", derr)
		}
		// errLinkLost too is retried: the next attempt finds the report
		// complete, missing or still to do, and acts on that.
		return err
	}
	if err := job.SetResult(result{ReportID: r.ID, Rows: int64(len(groups.rows)), Download: downloadPath(r.ID)}); err != nil {
		return err
	}
	return setProgress(ctx, job, 100, fmt.Sprintf("wrote %d rows from %d orders", len(groups.rows), scanned))
}

// discard deletes blob id, unfinished file of report reportID, and
// clears the report's reference to it. A blob that turns out to be a
// finished report's file (a commit reported as failed that did happen)
// is kept.
func (g *generator) discard(ctx context.Context, reportID int64, id string) error {
	finished, err := g.st.isFinishedFile(ctx, id)
	if err != nil || finished {
		return err
	}
	if err := g.blobs.Delete(ctx, id); err != nil && !errors.Is(err, blobs.ErrNotFound) {
		return err
	}
	return g.st.unlinkBlob(ctx, reportID, id)
}

// setProgress reports progress. Only a lost lease stops the work: a
// failed progress write is not worth failing a report for.
func setProgress(ctx context.Context, p progress, percent int, msg string) error {
	if err := p.SetProgress(ctx, percent, msg); err != nil {
		if errors.Is(err, queue.ErrLeaseLost) || ctx.Err() != nil {
			return err
		}
		if j, ok := p.(*queue.Job); ok {
			j.Logger().Warn("could not record progress", "err", err)
		}
	}
	return nil
}

// groupKey identifies one row of a report: a user id, or the Unix time
// of a period's start, and a currency.
type groupKey struct {
	group    int64
	currency string
}

// total is one row's aggregate.
type total struct {
	orders int64
	cents  int64
}

// user is a user's columns in a per-user report.
type user struct {
	email, name string
}

// groups is an aggregated report: its rows sorted by group then
// currency.
type groups struct {
	groupBy string
	rows    []groupKey
	totals  map[groupKey]total
	users   map[int64]user
}

// aggregate scans the orders p covers in keyset pages of g.pageSize,
// reporting progress after each page and stopping between pages when ctx
// is done, and returns the sorted groups and how many orders it scanned.
func (g *generator) aggregate(ctx context.Context, p Params, prog progress) (groups, int64, error) {
	f := g.st.filter(p)
	count, maxID, err := g.st.countOrders(ctx, f)
	if err != nil {
		return groups{}, 0, err
	}
	out := groups{groupBy: p.GroupBy, totals: map[groupKey]total{}, users: map[int64]user{}}
	var scanned int64
	if err := setProgress(ctx, prog, 0, fmt.Sprintf("scanned 0 of %d orders", count)); err != nil {
		return groups{}, 0, err
	}
	add := func(o order) error {
		k := groupKey{currency: o.Currency}
		switch p.GroupBy {
		case GroupByUser:
			k.group = o.UserID
			out.users[o.UserID] = user{o.Email, o.Name}
		case GroupByDay:
			t := o.CreatedAt.UTC()
			k.group = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).Unix()
		case GroupByMonth:
			t := o.CreatedAt.UTC()
			k.group = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).Unix()
		}
		t := out.totals[k]
		if o.Cents > 0 && t.cents > math.MaxInt64-o.Cents {
			return queue.Permanent(fmt.Errorf("the total of %s for group %d overflows", o.Currency, k.group))
		}
		t.orders++
		t.cents += o.Cents
		out.totals[k] = t
		return nil
	}
	for after := int64(0); after < maxID; {
		if err := ctx.Err(); err != nil {
			return groups{}, 0, fmt.Errorf("after %d of %d orders: %w", scanned, count, context.Cause(ctx))
		}
		n, last, err := g.st.orderPage(ctx, f, after, maxID, g.pageSize, add)
		if err != nil {
			return groups{}, 0, err
		}
		scanned += int64(n)
		if n < g.pageSize {
			break
		}
		after = last
		// Orders may change while the report runs; the count is a guide.
		pct := 99
		if count > 0 {
			pct = int(min(98, scanned*98/count))
		}
		if err := setProgress(ctx, prog, pct, fmt.Sprintf("scanned %d of %d orders", scanned, max(count, scanned))); err != nil {
			return groups{}, 0, err
		}
	}
	out.rows = make([]groupKey, 0, len(out.totals))
	for k := range out.totals {
		out.rows = append(out.rows, k)
	}
	slices.SortFunc(out.rows, func(a, b groupKey) int {
		return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.currency, b.currency))
	})
	return out, scanned, nil
}

// write streams groups as CSV into a new blob linked to report id.
func (g *generator) write(ctx context.Context, id int64, gr groups) (blobs.Blob, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeCSV(pw, gr)
		pw.CloseWithError(err) // nil closes with io.EOF
		done <- err
	}()
	b, err := g.blobs.PutWith(ctx, csvContentType, pr, blobs.PutOptions{Created: func(ctx context.Context, blobID string) error {
		return g.st.linkBlob(ctx, id, blobID)
	}})
	// Unblock the writer if Put stopped reading early.
	pr.CloseWithError(errors.New("the file store stopped reading"))
	werr := <-done
	if err != nil {
		return blobs.Blob{}, fmt.Errorf("store report %d: %w", id, err)
	}
	if werr != nil {
		return blobs.Blob{}, fmt.Errorf("write report %d: %w", id, werr)
	}
	return b, nil
}

// writeCSV writes gr as RFC 4180 CSV (CRLF line ends) with a header row. Per user: user_id, email, name,
// currency, orders, total_cents, total; per period: period (the UTC
// start, RFC 3339), currency, orders, total_cents, total. total is
// total_cents with two decimals.
func writeCSV(w io.Writer, gr groups) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true // RFC 4180
	header := []string{"period", "currency", "orders", "total_cents", "total"}
	if gr.groupBy == GroupByUser {
		header = []string{"user_id", "email", "name", "currency", "orders", "total_cents", "total"}
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	rec := make([]string, 0, len(header))
	for _, k := range gr.rows {
		t := gr.totals[k]
		rec = rec[:0]
		if gr.groupBy == GroupByUser {
			u := gr.users[k.group]
			rec = append(rec, strconv.FormatInt(k.group, 10), safeCell(u.email), safeCell(u.name))
		} else {
			rec = append(rec, time.Unix(k.group, 0).UTC().Format(time.RFC3339))
		}
		rec = append(rec, k.currency, strconv.FormatInt(t.orders, 10), strconv.FormatInt(t.cents, 10), formatCents(t.cents))
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// formatCents formats an amount in minor units with two decimals.
func formatCents(c int64) string {
	sign := ""
	u := uint64(c)
	if c < 0 {
		sign, u = "-", uint64(-(c+1))+1
	}
	return fmt.Sprintf("%s%d.%02d", sign, u/100, u%100)
}

// safeCell keeps a user-supplied text from being read as a formula by a
// spreadsheet: one starting with =, +, -, @, tab or carriage return gets
// a leading apostrophe.
func safeCell(s string) string {
	if s != "" {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			return "'" + s
		}
	}
	return s
}
