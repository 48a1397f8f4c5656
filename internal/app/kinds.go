package app

import (
	"time"

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

// Kinds configures the built-in job kinds that take settings. The same
// value goes to [RegisterKinds], for the workers that run the jobs, and
// to [Config].Kinds, for the API that enqueues them; its zero value means
// every default.
type Kinds struct {
	// Images sets upload limits, variant sizes and decoding limits of
	// image.thumbnail.
	Images images.Options
	// Webhooks sets the transport wrapper, per-attempt timeout, retry
	// policy and allowed networks of webhook.deliver; the API refuses to
	// register endpoints the deliveries would refuse to reach.
	// RegisterKinds fills in Breakers when it is nil, so that the API
	// reports the state of the breakers the deliveries use.
	Webhooks webhooks.Options
	// Videos sets the ffmpeg program and the timeout of video.thumbnail.
	Videos videos.Options
	// VideoMaxUpload caps a video upload (default videos.DefaultMaxUpload).
	VideoMaxUpload int64
}

// RegisterKinds registers every built-in job kind on w: the demo kinds
// and the kinds of the features (order.confirm, report.generate,
// image.thumbnail, webhook.deliver, video.thumbnail). k may be nil for the
// defaults. It fails only on invalid settings in k.
func RegisterKinds(w *queue.Workers, db *database.DB, k *Kinds) error {
	if k == nil {
		k = &Kinds{}
	}
	bs := blobs.NewStore(db)
	jobkinds.Register(w)
	orders.RegisterKinds(w, db)
	reports.RegisterKinds(w, db, bs)
	if err := images.RegisterKinds(w, db, bs, k.Images); err != nil {
		return err
	}
	k.Webhooks.Breakers = webhooks.RegisterKinds(w, db, k.Webhooks)
	videos.RegisterKinds(w, db, bs, k.Videos)
	return nil
}

// webhookOptions returns the options of the API's webhook service: the
// deliveries' breakers (a new set when k has none yet) and allowed
// networks, and the API's clock now.
func (k *Kinds) webhookOptions(now func() time.Time) webhooks.Options {
	if k.Webhooks.Breakers == nil {
		k.Webhooks.Breakers = resilience.NewBreakers(resilience.BreakerOptions{})
	}
	o := k.Webhooks
	o.Now = now
	return o
}
