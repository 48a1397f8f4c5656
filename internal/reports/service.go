// Package reports generates CSV reports over the orders table in the
// background. POST /api/v1/reports stores a report row and enqueues a
// report.generate job in one transaction; the job scans the matching
// orders in keyset pages, aggregates them, streams the CSV into the blob
// store and links it to the report; GET /api/v1/reports/{id}/download
// serves it.
package reports

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/enqueue"
)

// KindGenerate is the job kind that generates a report.
const KindGenerate = "report.generate"

// KindOrderTotals is the only report kind: order counts and totals per
// group and currency.
const KindOrderTotals = "order_totals"

// The groupings of an order_totals report.
const (
	GroupByUser  = "user"
	GroupByDay   = "day"
	GroupByMonth = "month"
)

// The order statuses, in the order reports list them.
var orderStatuses = []string{"pending", "confirmed", "cancelled"}

// defaultStatuses are the statuses a report counts when it names none:
// cancelled orders are left out unless asked for.
var defaultStatuses = []string{"pending", "confirmed"}

// Errors of the service; test for them with errors.Is.
var (
	// ErrNotFound means no report has the id.
	ErrNotFound = apperr.New(apperr.CodeNotFound, "no report has this id")
	// ErrNotReady means the report's CSV has not been generated yet.
	ErrNotReady = apperr.New(apperr.CodeConflict, "the report is not finished yet; poll its status URL until the job is completed")
	// ErrGone means the report's CSV has been deleted.
	ErrGone = apperr.New(apperr.CodeNotFound, "the report's file no longer exists")
)

// Params are what a report covers. Times are UTC; From is inclusive and
// To exclusive (orders with From <= created_at < To). Statuses are
// listed in the order pending, confirmed, cancelled, each once.
type Params struct {
	Kind     string    `json:"kind"`
	GroupBy  string    `json:"group_by"`
	From     time.Time `json:"from,omitzero"`
	To       time.Time `json:"to,omitzero"`
	Statuses []string  `json:"statuses"`
	// Currency, if set, keeps only orders in that currency.
	Currency string `json:"currency,omitzero"`
}

// Normalize checks p and puts it in canonical form: statuses defaulted,
// de-duplicated and ordered, times in UTC at microsecond precision. It
// returns a validation error naming every bad field.
func (p *Params) Normalize() error {
	var fe apperr.Fields
	bad := fe.Add
	switch p.Kind {
	case KindOrderTotals:
	case "":
		bad("kind", "is required")
	default:
		bad("kind", "unknown report kind %q (want %q)", p.Kind, KindOrderTotals)
	}
	switch p.GroupBy {
	case GroupByUser, GroupByDay, GroupByMonth:
	case "":
		bad("group_by", "is required")
	default:
		bad("group_by", "must be %q, %q or %q", GroupByUser, GroupByDay, GroupByMonth)
	}
	if !p.From.IsZero() {
		p.From = database.StoredTime(p.From)
	}
	if !p.To.IsZero() {
		p.To = database.StoredTime(p.To)
	}
	if !p.From.IsZero() && !p.To.IsZero() && !p.From.Before(p.To) {
		bad("to", "must be after from")
	}
	switch {
	case p.Statuses == nil:
		p.Statuses = slices.Clone(defaultStatuses)
	case len(p.Statuses) == 0:
		bad("statuses", "must name at least one status (or be left out for pending and confirmed)")
	default:
		ok := true
		for i, s := range p.Statuses {
			if !slices.Contains(orderStatuses, s) {
				bad(fmt.Sprintf("statuses[%d]", i), "unknown status %q (want pending, confirmed or cancelled)", s)
				ok = false
			}
		}
		if ok {
			var norm []string
			for _, s := range orderStatuses {
				if slices.Contains(p.Statuses, s) {
					norm = append(norm, s)
				}
			}
			p.Statuses = norm
		}
	}
	if p.Currency != "" && !isCurrency(p.Currency) {
		bad("currency", "must be an ISO 4217 code: 3 upper-case letters such as EUR")
	}
	return fe.Err()
}

// isCurrency reports whether s is 3 upper-case ASCII letters.
func isCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// Report is a stored report.
type Report struct {
	ID     int64
	Params Params
	// JobID is the report.generate job that generates it.
	JobID int64
	// BlobID is the CSV's blob; with CompletedAt zero it is a previous
	// attempt's, not yet (or never to be) finished.
	BlobID    string
	RowCount  int64
	CreatedAt time.Time
	// CompletedAt is zero until the CSV is stored.
	CompletedAt time.Time
}

// Complete reports whether the report's CSV is stored.
func (r Report) Complete() bool { return !r.CompletedAt.IsZero() }

// Jobs is what the service needs of the job engine: enqueueing its jobs
// and reading them back. *queue.Client satisfies it.
type Jobs = enqueue.Jobs

// Options configure a [Service].
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Service creates and reads reports.
type Service struct {
	db    *database.DB
	st    *store
	jobs  Jobs
	blobs *blobs.Store
	now   func() time.Time
}

// NewService returns the service of the reports in db, which enqueues
// their report.generate jobs with jobs and keeps their CSVs in bs.
func NewService(db *database.DB, jobs Jobs, bs *blobs.Store, o Options) (*Service, error) {
	if db == nil || jobs == nil || bs == nil {
		return nil, errors.New("reports: NewService needs a database, a job engine and a blob store")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{db: db, st: newStore(db), jobs: jobs, blobs: bs, now: o.Now}, nil
}

// Created identifies a newly requested report and its job.
type Created struct {
	ReportID int64
	JobID    int64
}

// generateArgs are the arguments of a report.generate job.
type generateArgs struct {
	ReportID int64 `json:"report_id"`
}

// Validate checks the report id.
func (a *generateArgs) Validate() error { return enqueue.ID("report_id", a.ReportID) }

// Create validates p (a validation error when bad), then stores the
// report and enqueues its report.generate job in one transaction: both
// exist or neither does.
func (s *Service) Create(ctx context.Context, p Params) (Created, error) {
	if err := p.Normalize(); err != nil {
		return Created{}, err
	}
	params, err := json.Marshal(p)
	if err != nil {
		return Created{}, fmt.Errorf("encode report parameters: %w", err)
	}
	now := database.StoredTime(s.now())
	c, err := database.Once(ctx, s.db, func(tx *sql.Tx) (Created, error) {
		id, err := s.st.insert(ctx, tx, p.Kind, params, now)
		if err != nil {
			return Created{}, err
		}
		jobID, err := enqueue.InTx(ctx, s.jobs, tx, KindGenerate, generateArgs{ReportID: id})
		if err != nil {
			return Created{}, fmt.Errorf("report %d: %w", id, err)
		}
		return Created{ReportID: id, JobID: jobID}, s.st.setJob(ctx, tx, id, jobID)
	})
	if err != nil {
		return Created{}, fmt.Errorf("create report: %w", err)
	}
	return c, nil
}

// Status is a report with its job. Job is nil when the job no longer
// exists (finished jobs are pruned after a while; reports stay).
type Status = enqueue.Tracked[Report]

// Get returns the report with the id and its job ([ErrNotFound] if there
// is no such report).
func (s *Service) Get(ctx context.Context, id int64) (Status, error) {
	r, err := s.st.get(ctx, s.db.R, id)
	if err != nil {
		return Status{}, err
	}
	st, err := enqueue.Track(ctx, s.jobs, r, r.JobID)
	if err != nil {
		return Status{}, fmt.Errorf("report %d: %w", id, err)
	}
	return st, nil
}

// Download returns the report with the id if its CSV is ready:
// [ErrNotFound] for an unknown report, [ErrNotReady] for one still being
// generated, [ErrGone] for one whose file has been deleted.
func (s *Service) Download(ctx context.Context, id int64) (Report, error) {
	r, err := s.st.get(ctx, s.db.R, id)
	if err != nil {
		return Report{}, err
	}
	if !r.Complete() {
		return Report{}, fmt.Errorf("report %d: %w", id, ErrNotReady)
	}
	if r.BlobID == "" {
		return Report{}, apperr.Wrapf(ErrGone, "report %d's file no longer exists; request the report again", id)
	}
	return r, nil
}

// Blobs returns the store the CSVs are kept in.
func (s *Service) Blobs() *blobs.Store { return s.blobs }

// filename is the download name of r's CSV.
func filename(r Report) string {
	return fmt.Sprintf("report-%d-%s-by-%s.csv", r.ID, r.Params.Kind, r.Params.GroupBy)
}
