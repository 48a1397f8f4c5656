package httpapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/kilnhq/kiln/internal/apperr"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/queue"
)

// maxMS bounds every millisecond field so that converting it to a
// time.Duration cannot overflow (about 34 years).
const maxMS = 1 << 40

// createJobRequest is the body of POST /api/v1/jobs.
type createJobRequest struct {
	Kind        string          `json:"kind"`
	Args        json.RawMessage `json:"args"`
	Queue       string          `json:"queue"`
	Priority    int             `json:"priority"`
	RunAt       *string         `json:"run_at"`
	RunInMS     *int64          `json:"run_in_ms"`
	MaxAttempts *int64          `json:"max_attempts"`
	Backoff     *backoffRequest `json:"backoff"`
	TimeoutMS   *int64          `json:"timeout_ms"`
	UniqueKey   string          `json:"unique_key"`
	UniqueForMS *int64          `json:"unique_for_ms"`
}

type backoffRequest struct {
	Type        string   `json:"type"`
	BaseDelayMS *int64   `json:"base_delay_ms"`
	MaxDelayMS  *int64   `json:"max_delay_ms"`
	Jitter      *float64 `json:"jitter"`
}

// parseCreate decodes and validates a create body. Every bad field is
// listed in one 422; engine-level checks (kind registered, args accepted
// by the kind) come from v.
func parseCreate(body []byte, v func(queue.InsertParams) error) (queue.InsertParams, error) {
	var req createJobRequest
	if err := decodeBytes(body, &req); err != nil {
		return queue.InsertParams{}, err
	}
	var fe apperr.Fields
	bad := fe.Add
	ms := func(field string, p *int64, min int64) time.Duration {
		if p == nil {
			return 0
		}
		if *p < min || *p > maxMS {
			bad(field, "must be between %d and %d", min, int64(maxMS))
			return 0
		}
		return time.Duration(*p) * time.Millisecond
	}
	p := queue.InsertParams{Kind: req.Kind, Args: req.Args}
	switch {
	case req.Kind == "":
		bad("kind", "is required")
	case !printable(req.Kind, queue.MaxKindLength):
		bad("kind", "must be 1-%d printable ASCII characters without spaces", queue.MaxKindLength)
	}
	if len(req.Args) > 0 {
		if t := strings.TrimSpace(string(req.Args)); t == "null" {
			p.Args = nil
		} else if t[0] != '{' {
			bad("args", "must be a JSON object")
		}
	}
	if req.Queue != "" && !printable(req.Queue, queue.MaxQueueLength) {
		bad("queue", "must be 1-%d printable ASCII characters without spaces", queue.MaxQueueLength)
	}
	p.Opts.Queue = req.Queue
	if req.Priority < -queue.MaxPriority || req.Priority > queue.MaxPriority {
		bad("priority", "must be between %d and %d", -queue.MaxPriority, queue.MaxPriority)
	}
	p.Opts.Priority = req.Priority
	if req.RunAt != nil {
		t, err := time.Parse(time.RFC3339Nano, *req.RunAt)
		switch {
		case err != nil:
			bad("run_at", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		case t.Year() < 1970 || t.Year() > 9999:
			bad("run_at", "must be between years 1970 and 9999")
		default:
			p.Opts.RunAt = t
		}
		if req.RunInMS != nil {
			bad("run_in_ms", "must not be given with run_at")
		}
	}
	if req.RunAt == nil {
		p.Opts.RunIn = ms("run_in_ms", req.RunInMS, 0)
	}
	var retry queue.RetryPolicy
	if req.MaxAttempts != nil {
		if *req.MaxAttempts < 1 || *req.MaxAttempts > math.MaxInt32 {
			bad("max_attempts", "must be between 1 and %d", math.MaxInt32)
		} else {
			retry.MaxAttempts = int(*req.MaxAttempts)
		}
	}
	if b := req.Backoff; b != nil {
		switch queue.Backoff(b.Type) {
		case "", queue.BackoffExponential, queue.BackoffFixed:
			retry.Backoff = queue.Backoff(b.Type)
		default:
			bad("backoff.type", "must be %q or %q", queue.BackoffExponential, queue.BackoffFixed)
		}
		retry.BaseDelay = ms("backoff.base_delay_ms", b.BaseDelayMS, 1)
		retry.MaxDelay = ms("backoff.max_delay_ms", b.MaxDelayMS, 1)
		if b.Jitter != nil {
			if *b.Jitter < 0 || *b.Jitter > 1 {
				bad("backoff.jitter", "must be between 0 and 1")
			} else if *b.Jitter == 0 {
				retry.Jitter = -1 // the engine reads zero as "default"
			} else {
				retry.Jitter = *b.Jitter
			}
		}
	}
	if retry != (queue.RetryPolicy{}) {
		p.Opts.Retry = &retry
	}
	p.Opts.Timeout = ms("timeout_ms", req.TimeoutMS, 1)
	if len(req.UniqueKey) > queue.MaxUniqueKey {
		bad("unique_key", "must be at most %d bytes", queue.MaxUniqueKey)
	}
	p.Opts.UniqueKey = req.UniqueKey
	p.Opts.UniqueFor = ms("unique_for_ms", req.UniqueForMS, 1)
	if req.UniqueForMS != nil && req.UniqueKey == "" {
		bad("unique_for_ms", "needs unique_key")
	}
	if len(fe) > 0 {
		return p, &Error{Code: CodeValidation, Message: "the request has invalid fields", Fields: fe}
	}
	if err := v(p); err != nil {
		switch {
		case errors.Is(err, queue.ErrUnknownKind), errors.Is(err, queue.ErrKindUnavailable):
			return p, &Error{Code: CodeValidation, Message: "the request has invalid fields", Fields: []FieldError{{Field: "kind", Message: err.Error()}}, Err: err}
		case errors.Is(err, queue.ErrInvalid):
			return p, &Error{Code: CodeValidation, Message: err.Error(), Err: err}
		}
		return p, err
	}
	return p, nil
}

// printable mirrors the engine's rule for kind and queue names.
func printable(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// jobResponse is a job as the API shows it: durations in milliseconds.
type jobResponse struct {
	ID              int64                `json:"id"`
	Kind            string               `json:"kind"`
	Queue           string               `json:"queue"`
	State           queue.JobState       `json:"state"`
	Args            json.RawMessage      `json:"args"`
	Priority        int                  `json:"priority"`
	Attempt         int                  `json:"attempt"`
	MaxAttempts     int                  `json:"max_attempts"`
	RunAt           time.Time            `json:"run_at"`
	CreatedAt       time.Time            `json:"created_at"`
	AttemptedAt     *time.Time           `json:"attempted_at"`
	FinalizedAt     *time.Time           `json:"finalized_at"`
	Progress        int                  `json:"progress"`
	ProgressMessage string               `json:"progress_message,omitempty"`
	Result          json.RawMessage      `json:"result"`
	Errors          []queue.AttemptError `json:"errors"`
	UniqueKey       string               `json:"unique_key,omitempty"`
	TimeoutMS       int64                `json:"timeout_ms,omitempty"`
	CancelRequested bool                 `json:"cancel_requested"`
	// Duplicate is set on POST /jobs when a unique key matched an
	// existing job, which is returned (with 200) instead of a new one.
	Duplicate bool `json:"duplicate,omitempty"`
}

func toJob(j *queue.Job) jobResponse {
	r := jobResponse{
		ID: j.ID, Kind: j.Kind, Queue: j.Queue, State: j.State, Args: j.Args,
		Priority: j.Priority, Attempt: j.Attempt, MaxAttempts: j.MaxAttempts,
		RunAt: j.RunAt, CreatedAt: j.CreatedAt, AttemptedAt: j.AttemptedAt, FinalizedAt: j.FinalizedAt,
		Progress: j.Progress, ProgressMessage: j.ProgressMessage, Result: j.Result,
		Errors: j.Errors, UniqueKey: j.UniqueKey, TimeoutMS: j.Timeout.Milliseconds(),
		CancelRequested: j.CancelRequested,
	}
	if len(r.Args) == 0 {
		r.Args = json.RawMessage("{}")
	}
	if len(r.Result) == 0 {
		r.Result = json.RawMessage("null")
	}
	if r.Errors == nil {
		r.Errors = []queue.AttemptError{}
	}
	for i := range r.Errors {
		// Stacks are for operators reading logs, not API clients.
		r.Errors[i].Stack = ""
	}
	return r
}

func (a *API) createJob(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	p, err := parseCreate(body, a.jobs.ValidateInsert)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	out, err := a.insertJob(r.Context(), p)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if out.Duplicate {
		WriteJSON(w, r, http.StatusOK, out)
		return
	}
	w.Header().Set("Location", JobPath(out.ID))
	WriteJSON(w, r, http.StatusCreated, out)
}

// insertJob inserts the job of p; see [API.keyed].
func (a *API) insertJob(ctx context.Context, p queue.InsertParams) (jobResponse, error) {
	return keyed(a, ctx, func() (jobResponse, error) {
		res, err := a.jobs.Insert(ctx, p)
		if err != nil {
			return jobResponse{}, err
		}
		return insertResponse(res), nil
	}, func(tx *sql.Tx) (jobResponse, error) {
		res, err := a.jobs.InsertTx(ctx, tx, p)
		if err != nil {
			return jobResponse{}, err
		}
		if len(res) != 1 || res[0].Job == nil {
			return jobResponse{}, fmt.Errorf("insert job: the engine returned %d results", len(res))
		}
		return insertResponse(res[0]), nil
	})
}

func insertResponse(res queue.InsertResult) jobResponse {
	out := toJob(res.Job)
	out.Duplicate = res.Duplicate
	return out
}

// keyed runs plain, or, for a request with an Idempotency-Key given a
// database ([Config.DB]), inTx in a transaction that also records its
// outcome for the key ([database.Once]), so that a repeat after a crash
// gets that outcome instead of the work done again. (plain, through the
// engine's own transaction, also wakes this process's workers at once
// and emits the engine's events, which an operation inside a caller's
// transaction cannot.)
func keyed[T any](a *API, ctx context.Context, plain func() (T, error), inTx func(tx *sql.Tx) (T, error)) (T, error) {
	if a.db == nil || !database.Keyed(ctx) {
		return plain()
	}
	return database.Once(ctx, a.db, inTx)
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request) {
	a.jobOp(w, r, responding(a.jobs.Get))
}

func (a *API) retryJob(w http.ResponseWriter, r *http.Request) {
	a.jobChange(w, r, a.jobs.Retry, a.jobs.RetryTx)
}

func (a *API) cancelJob(w http.ResponseWriter, r *http.Request) {
	a.jobChange(w, r, a.jobs.Cancel, a.jobs.CancelTx)
}

// jobChange applies op to the job of the path, or opTx for a keyed
// request (see [keyed]), and answers with the job.
func (a *API) jobChange(w http.ResponseWriter, r *http.Request,
	op func(ctx context.Context, id int64) (*queue.Job, error),
	opTx func(ctx context.Context, tx any, id int64) (*queue.Job, error)) {
	a.jobOp(w, r, func(ctx context.Context, id int64) (jobResponse, error) {
		return keyed(a, ctx,
			func() (jobResponse, error) { return render(op(ctx, id)) },
			func(tx *sql.Tx) (jobResponse, error) { return render(opTx(ctx, tx, id)) })
	})
}

func (a *API) deleteJob(w http.ResponseWriter, r *http.Request) {
	a.jobOp(w, r, responding(a.jobs.Delete))
}

// responding turns an operation on a job into one that returns the job as
// the API shows it.
func responding(op func(ctx context.Context, id int64) (*queue.Job, error)) func(ctx context.Context, id int64) (jobResponse, error) {
	return func(ctx context.Context, id int64) (jobResponse, error) { return render(op(ctx, id)) }
}

// render returns j as the API shows it, or err.
func render(j *queue.Job, err error) (jobResponse, error) {
	if err != nil {
		return jobResponse{}, err
	}
	return toJob(j), nil
}

func (a *API) jobOp(w http.ResponseWriter, r *http.Request, op func(ctx context.Context, id int64) (jobResponse, error)) {
	id, err := PathID(r, "id")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	j, err := op(r.Context(), id)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, r, http.StatusOK, j)
}

// Listing limits.
const (
	defaultListLimit = 50
	maxListLimit     = 1000
)

// parseList parses the query of GET /api/v1/jobs by the rules of
// [ParseList]. The filters may repeat or hold comma-separated values.
func parseList(rawQuery string) (queue.ListParams, error) {
	p := queue.ListParams{Desc: true}
	name := func(param string, max int, dst *[]string) Filter {
		return Filter{Name: param, Multi: true, Parse: func(v string) error {
			if !printable(v, max) {
				return errors.New("must be printable ASCII without spaces")
			}
			*dst = append(*dst, v)
			return nil
		}}
	}
	page, err := ParseList(rawQuery, ListSpec{DefaultLimit: defaultListLimit, MaxLimit: maxListLimit, Filters: []Filter{
		{Name: "state", Multi: true, Parse: func(v string) error {
			st, err := queue.ParseState(v)
			if err != nil {
				return err
			}
			p.States = append(p.States, st)
			return nil
		}},
		name("kind", queue.MaxKindLength, &p.Kinds),
		name("queue", queue.MaxQueueLength, &p.Queues),
	}})
	p.Limit, p.AfterID = page.Limit, page.After
	return p, err
}

func (a *API) listJobs(w http.ResponseWriter, r *http.Request) {
	p, err := parseList(r.URL.RawQuery)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	jobs, err := a.jobs.List(r.Context(), p)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, r, http.StatusOK, NewList("jobs", jobs, p.Limit, toJob, func(j *queue.Job) int64 { return j.ID }))
}

// queueResponse describes one queue; counts hold every state.
type queueResponse struct {
	Name            string                   `json:"name"`
	Paused          bool                     `json:"paused"`
	Counts          map[queue.JobState]int64 `json:"counts"`
	OldestAvailable *time.Time               `json:"oldest_available"`
}

func (a *API) listQueues(w http.ResponseWriter, r *http.Request) {
	stats, err := a.jobs.Queues(r.Context())
	if err != nil {
		WriteError(w, r, err)
		return
	}
	out := make([]queueResponse, 0, len(stats))
	for _, s := range stats {
		c := make(map[queue.JobState]int64, len(queue.AllStates))
		for _, st := range queue.AllStates {
			c[st] = s.Counts[st]
		}
		out = append(out, queueResponse{Name: s.Name, Paused: s.Paused, Counts: c, OldestAvailable: s.OldestAvailable})
	}
	WriteJSON(w, r, http.StatusOK, map[string]any{"queues": out})
}

func (a *API) pauseQueue(w http.ResponseWriter, r *http.Request) {
	a.setPaused(w, r, true)
}

func (a *API) resumeQueue(w http.ResponseWriter, r *http.Request) {
	a.setPaused(w, r, false)
}

func (a *API) setPaused(w http.ResponseWriter, r *http.Request, paused bool) {
	name := r.PathValue("name")
	if !printable(name, queue.MaxQueueLength) {
		WriteError(w, r, ParamError("name", "must be 1-%d printable ASCII characters without spaces", queue.MaxQueueLength))
		return
	}
	op := a.jobs.Resume
	if paused {
		op = a.jobs.Pause
	}
	if err := op(r.Context(), name); err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, r, http.StatusOK, map[string]any{"name": name, "paused": paused})
}

func (a *API) listKinds(w http.ResponseWriter, r *http.Request) {
	ws := a.jobs.Workers()
	kinds := ws.Kinds()
	if kinds == nil {
		kinds = []string{}
	}
	unavailable := map[string]string{}
	for _, k := range kinds {
		if kc, ok := ws.Kind(k); ok && kc.Unavailable != nil {
			unavailable[k] = kc.Unavailable.Error()
		}
	}
	WriteJSON(w, r, http.StatusOK, map[string]any{"kinds": kinds, "unavailable": unavailable})
}
