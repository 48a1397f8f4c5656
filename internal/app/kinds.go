package app

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnhq/kiln/internal/blobs"
	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/images"
	"github.com/kilnhq/kiln/internal/jobkinds"
	"github.com/kilnhq/kiln/internal/orders"
	"github.com/kilnhq/kiln/internal/reports"
	"github.com/kilnhq/kiln/internal/resilience"
	"github.com/kilnhq/kiln/internal/videos"
	"github.com/kilnhq/kiln/internal/webhooks"
	"github.com/kilnhq/kiln/queue"
)

// Kinds configures the built-in job kinds that take settings; its zero
// value means every default.
type Kinds struct {
	// Images sets upload limits, variant sizes and decoding limits of
	// image.thumbnail.
	Images images.Options
	// Webhooks sets the transport wrapper, per-attempt timeout, retry
	// policy, circuit breakers and allowed networks of webhook.deliver;
	// the API refuses to register endpoints the deliveries would refuse
	// to reach, and shows the breakers the deliveries trip.
	Webhooks webhooks.Options
	// Videos sets the ffmpeg program, the timeout of video.thumbnail and
	// the upload limit.
	Videos videos.Options
}

// Base is what the features share, made once at start-up by [NewBase]
// and handed, the same value, to [RegisterKinds] (the workers that run
// the jobs) and to [New] (the API that enqueues them). Nothing fills it
// in later.
type Base struct {
	DB *database.DB
	// Blobs keeps every feature's files.
	Blobs *blobs.Store
	// Kinds are the built-in kinds' settings; Kinds.Webhooks.Breakers is
	// always set.
	Kinds Kinds
	// Metrics is where features register metrics of their own (webhook
	// attempts by status code, thumbnail durations); nil registers none.
	Metrics prometheus.Registerer
	// Now is the clock.
	Now func() time.Time
}

// NewBase returns the base over db with the kinds' settings k (nil: the
// defaults), registering features' metrics on reg (nil: none), on clock
// now (nil: time.Now). Webhook deliveries get a set of circuit breakers
// of their own unless k names one.
func NewBase(db *database.DB, k *Kinds, reg prometheus.Registerer, now func() time.Time) *Base {
	if now == nil {
		now = time.Now
	}
	var kinds Kinds
	if k != nil {
		kinds = *k
	}
	if kinds.Webhooks.Breakers == nil {
		kinds.Webhooks.Breakers = resilience.NewBreakers(resilience.BreakerOptions{})
	}
	kinds.Images.Metrics, kinds.Webhooks.Metrics = reg, reg
	return &Base{DB: db, Blobs: blobs.NewStore(db, blobs.WithClock(now)), Kinds: kinds, Metrics: reg, Now: now}
}

// RegisterKinds registers every built-in job kind on w: the demo kinds
// and the kinds of the features (order.confirm, report.generate,
// image.thumbnail, webhook.deliver, video.thumbnail). It fails only on
// invalid settings in b.Kinds.
func RegisterKinds(w *queue.Workers, b *Base) error {
	if b == nil || b.DB == nil {
		return errors.New("app: RegisterKinds needs a Base with a DB")
	}
	jobkinds.Register(w)
	orders.RegisterKinds(w, b.DB)
	reports.RegisterKinds(w, b.DB, b.Blobs)
	if err := images.RegisterKinds(w, b.DB, b.Blobs, b.Kinds.Images); err != nil {
		return err
	}
	webhooks.RegisterKinds(w, b.DB, b.Kinds.Webhooks)
	videos.RegisterKinds(w, b.DB, b.Blobs, b.Kinds.Videos)
	return nil
}

// Queues are the queues of the built-in kinds other than the default
// one, for a process with procs CPUs, each with a concurrency that suits
// its work: image thumbnails get one worker per CPU, ffmpeg (itself
// multi-threaded) one per two CPUs, so that CPU-bound jobs cannot take
// every CPU from the API; webhook deliveries wait on the network.
func Queues(procs int) map[string]int {
	return map[string]int{
		images.QueueName: max(1, procs),
		videos.Queue:     max(1, procs/2),
		webhooks.Queue:   20,
	}
}
