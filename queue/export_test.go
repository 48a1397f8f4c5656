package queue

import "context"

// The background components, for their tests in package queue_test, which
// run them on a real driver (package queue cannot import one).
var (
	NewElector       = newElector
	NewPromoter      = newPromoter
	NewRescuer       = newRescuer
	NewPruner        = newPruner
	NewHeartbeat     = newHeartbeat
	NewCancelWatcher = newCancelWatcher
	NewPauseWatcher  = newPauseWatcher

	// The causes the components cancel attempts with.
	ErrLeaseLostCause       = errLeaseLost
	ErrCancelRequestedCause = errCancelRequested
)

type (
	Elector       = elector
	Promoter      = promoter
	Rescuer       = rescuer
	Pruner        = pruner
	Heartbeat     = heartbeat
	CancelWatcher = cancelWatcher
	PauseWatcher  = pauseWatcher

	ElectorConfig       = electorConfig
	PromoterConfig      = promoterConfig
	RescuerConfig       = rescuerConfig
	PrunerConfig        = prunerConfig
	HeartbeatConfig     = heartbeatConfig
	CancelWatcherConfig = cancelWatcherConfig
	PauseWatcherConfig  = pauseWatcherConfig
	Attempt             = attempt
)

const LeaderName = leaderName

// NewAttempt returns job, claimed through a driver, as a client tracks
// it while its handler runs.
func NewAttempt(job *Job) *Attempt {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &attempt{job: job, ctx: ctx, cancel: cancel}
}

// Done is closed once the attempt is cancelled.
func (a *attempt) Done() <-chan struct{} { return a.ctx.Done() }

// Cause is why the attempt was cancelled, or nil.
func (a *attempt) Cause() error { return context.Cause(a.ctx) }

// Decide marks the attempt's outcome as decided, as when its handler has
// returned.
func (a *attempt) Decide() { a.finish() }

// Job is the attempt's job.
func (a *attempt) Job() *Job { return a.job }
