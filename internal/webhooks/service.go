package webhooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/enqueue"
	"github.com/kilnhq/kiln/internal/resilience"
	"github.com/kilnhq/kiln/queue"
)

// Jobs is what the service needs of the job engine: enqueueing its jobs
// and reading them back. *queue.Client satisfies it.
type Jobs = enqueue.Jobs

// Service manages endpoints and deliveries.
type Service struct {
	db       *database.DB
	st       *store
	jobs     Jobs
	breakers *resilience.Breakers
	guard    guard
	now      func() time.Time
}

// NewService returns the service of the webhook endpoints and
// deliveries in db, which enqueues webhook.deliver jobs with jobs. o is
// what the deliveries are given: of it the service uses Breakers, which
// must be the set the deliveries use (as [RegisterKinds] returns it), so
// that an endpoint shows its host's breaker (nil shows every host
// closed); AllowNetworks, to refuse endpoints the deliveries would
// refuse; and Now (default time.Now).
func NewService(db *database.DB, jobs Jobs, o Options) (*Service, error) {
	if db == nil || jobs == nil {
		return nil, errors.New("webhooks: NewService needs a database and a job engine")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{db: db, st: newStore(db), jobs: jobs, breakers: o.Breakers, guard: guard{o.AllowNetworks}, now: o.Now}, nil
}

func (s *Service) timestamp() time.Time { return database.StoredTime(s.now()) }

// EndpointInput is what a new endpoint is made of.
type EndpointInput struct {
	URL         string
	Description string
}

// CreateEndpoint validates in (a a validation error when bad) and stores
// a new endpoint with a new signing secret, which the returned endpoint
// carries. A URL whose host is an address that is neither public nor in
// [Options].AllowNetworks, in whatever form it is written, or the name
// localhost, is refused; other names are checked at every delivery.
func (s *Service) CreateEndpoint(ctx context.Context, in EndpointInput) (Endpoint, error) {
	var v validation
	u, err := ValidateURL(in.URL)
	if err == nil {
		err = s.guard.checkURL(u)
	}
	var refused *AddressError
	switch {
	case errors.As(err, &refused):
		v.bad("url", "%s", refused.fieldMessage())
	case err != nil:
		v.bad("url", "%s", err.Error())
	}
	validateDescription(&v, in.Description)
	if err := v.err(); err != nil {
		return Endpoint{}, err
	}
	secret, err := newSecret()
	if err != nil {
		return Endpoint{}, err
	}
	return database.Once(ctx, s.db, func(tx *sql.Tx) (Endpoint, error) {
		e := Endpoint{URL: u, Description: in.Description, Secret: secret, CreatedAt: s.timestamp()}
		err := s.st.insertEndpoint(ctx, tx, &e)
		return e, err
	})
}

// Endpoint returns endpoint id ([ErrNotFound] if there is none).
func (s *Service) Endpoint(ctx context.Context, id int64) (Endpoint, error) {
	return s.st.endpoint(ctx, s.db.R, id)
}

// Endpoints returns a page of endpoints, newest first.
func (s *Service) Endpoints(ctx context.Context, p ListParams) ([]Endpoint, error) {
	return s.st.endpoints(ctx, p)
}

// DeleteEndpoint deletes endpoint id with its deliveries and their
// attempts ([ErrNotFound] if there is none). Jobs of its pending
// deliveries find them gone and cancel themselves.
func (s *Service) DeleteEndpoint(ctx context.Context, id int64) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error { return s.st.deleteEndpoint(ctx, tx, id) })
}

// Breaker returns the circuit breaker state of url's host in this
// process.
func (s *Service) Breaker(url string) resilience.BreakerState {
	key := hostKey(url)
	if s.breakers == nil {
		return resilience.BreakerState{Key: key, State: resilience.Closed}
	}
	st, _ := s.breakers.State(key)
	return st
}

// deliverArgs are the arguments of a webhook.deliver job.
type deliverArgs struct {
	DeliveryID int64 `json:"delivery_id"`
}

// Validate checks the delivery id.
func (a *deliverArgs) Validate() error { return enqueue.ID("delivery_id", a.DeliveryID) }

// Deliver stores a delivery of event with payload (a JSON object) to
// endpoint endpointID and enqueues its job, in one transaction. Errors:
// a validation error, [ErrNotFound] for the endpoint.
func (s *Service) Deliver(ctx context.Context, endpointID int64, event string, payload json.RawMessage) (Delivery, error) {
	return database.Once(ctx, s.db, func(tx *sql.Tx) (Delivery, error) {
		return s.Enqueue(ctx, tx, endpointID, event, payload)
	})
}

// Enqueue stores a delivery of event with payload (a JSON object) to
// endpoint endpointID and enqueues its webhook.deliver job, both in tx:
// call it inside another feature's transaction so that the event is
// delivered if and only if that transaction commits. Errors:
// a validation error for a bad event or payload, [ErrNotFound] for the
// endpoint (wrapped), or a database error that should abort tx.
func (s *Service) Enqueue(ctx context.Context, tx *sql.Tx, endpointID int64, event string, payload json.RawMessage) (Delivery, error) {
	var v validation
	validateEvent(&v, event)
	payload = normalizePayload(&v, payload)
	if err := v.err(); err != nil {
		return Delivery{}, err
	}
	if _, err := s.st.endpoint(ctx, tx, endpointID); err != nil {
		return Delivery{}, err
	}
	d := Delivery{EndpointID: endpointID, Event: event, Payload: payload, Status: StatusPending, CreatedAt: s.timestamp()}
	if err := s.st.insertDelivery(ctx, tx, &d); err != nil {
		return Delivery{}, err
	}
	jobID, err := enqueue.InTx(ctx, s.jobs, tx, KindDeliver, deliverArgs{DeliveryID: d.ID})
	if err != nil {
		return Delivery{}, fmt.Errorf("webhook delivery %d: %w", d.ID, err)
	}
	d.JobID = jobID
	if err := s.st.setJob(ctx, tx, d.ID, d.JobID); err != nil {
		return Delivery{}, err
	}
	return d, nil
}

// Deliveries returns a page of endpoint endpointID's deliveries, newest
// first ([ErrNotFound] if there is no such endpoint).
func (s *Service) Deliveries(ctx context.Context, endpointID int64, p ListParams) ([]Delivery, error) {
	if _, err := s.st.endpoint(ctx, s.db.R, endpointID); err != nil {
		return nil, err
	}
	return s.st.deliveries(ctx, endpointID, p)
}

// DeliveryDetail is a delivery with every attempt and its job. Job is
// nil once the job has been pruned.
type DeliveryDetail struct {
	Delivery
	Attempts []Attempt
	Job      *queue.Job
}

// Delivery returns delivery id with its attempts and job ([ErrNotFound]
// if there is none). A pending delivery whose job was cancelled or
// failed shows as cancelled or failed, and its latest attempt's RetryAt
// is the job's next run while it waits.
func (s *Service) Delivery(ctx context.Context, id int64) (DeliveryDetail, error) {
	d, err := s.st.delivery(ctx, s.db.R, id)
	if err != nil {
		return DeliveryDetail{}, err
	}
	as, err := s.st.attempts(ctx, id)
	if err != nil {
		return DeliveryDetail{}, err
	}
	out := DeliveryDetail{Delivery: d, Attempts: as}
	j, err := enqueue.Job(ctx, s.jobs, d.JobID)
	if err != nil {
		return DeliveryDetail{}, fmt.Errorf("webhook delivery %d: %w", id, err)
	}
	out.Job = j
	if j == nil || d.Status != StatusPending {
		return out, nil
	}
	switch j.State {
	case queue.StateCancelled:
		out.Status = StatusCancelled
	case queue.StateFailed:
		out.Status = StatusFailed
	case queue.StateScheduled, queue.StateRetryable:
		if n := len(out.Attempts); n > 0 {
			out.Attempts[n-1].RetryAt = j.RunAt
		}
	}
	return out, nil
}
