package cli

import (
	"context"
	"log/slog"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnhq/kiln/internal/app"
	"github.com/kilnhq/kiln/internal/images"
	"github.com/kilnhq/kiln/internal/resilience"
	"github.com/kilnhq/kiln/internal/tracing"
	"github.com/kilnhq/kiln/internal/videos"
	"github.com/kilnhq/kiln/internal/webhooks"
)

// kindFlags are the settings of the built-in kinds, shared by serve and
// worker: a worker runs the jobs, serve also takes the uploads.
type kindFlags struct {
	imageSizes     string
	imageMaxUpload string
	imageMaxPixels int64
	imageDecoding  int
	videoMaxUpload string
	ffmpeg         string
	ffmpegTimeout  time.Duration
	webhookTimeout time.Duration
	webhookAllow   string
}

func (k *kindFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&k.imageSizes, "image-sizes", "128,512,1024", "image.thumbnail: variant sizes (longest edge in pixels) made when an upload names none")
	fl.StringVar(&k.imageMaxUpload, "image-max-upload", "20MiB", "largest image upload accepted (bytes, or with KiB, MiB, GiB)")
	fl.Int64Var(&k.imageMaxPixels, "image-max-pixels", images.DefaultMaxPixels, "image.thumbnail: images declaring more pixels fail at once, before decoding (bounds memory per job)")
	fl.IntVar(&k.imageDecoding, "image-max-decoding", 0, "image.thumbnail: images decoded and resized at once in this process, on low-priority threads, however many jobs run (0: half the CPUs for serve, so the API keeps the rest; all of them for worker)")
	fl.StringVar(&k.videoMaxUpload, "video-max-upload", "512MiB", "largest video upload accepted (bytes, or with KiB, MiB, GiB)")
	fl.StringVar(&k.ffmpeg, "ffmpeg", "ffmpeg", "video.thumbnail: the ffmpeg program, a path or a name on the PATH; without it the kind is listed as unavailable")
	fl.DurationVar(&k.ffmpegTimeout, "ffmpeg-timeout", videos.DefaultTimeout, "video.thumbnail: how long one attempt, ffmpeg included, may run")
	fl.DurationVar(&k.webhookTimeout, "webhook-timeout", webhooks.DefaultTimeout, "webhook.deliver: how long one delivery attempt may take, response included")
	fl.StringVar(&k.webhookAllow, "webhook-allow-networks", "", "webhook.deliver: comma-separated CIDR ranges that webhooks may reach although they are not public, as in 10.0.0.0/8,127.0.0.0/8 (default none: loopback, private, link-local and other special addresses are refused, at registration and at every connection after DNS resolution)")
}

// check validates the flags and returns the kinds' settings, without
// the parts that need a running process (HTTP client, breaker log).
func (k *kindFlags) check() (*app.Kinds, error) {
	sizes, err := images.ParseSizes(k.imageSizes)
	if err != nil {
		return nil, usagef("--image-sizes: %v", err)
	}
	imgMax, err := parseBytes(k.imageMaxUpload)
	if err != nil || imgMax == 0 {
		return nil, usagef("--image-max-upload: want a positive size such as 20MiB, got %q", k.imageMaxUpload)
	}
	vidMax, err := parseBytes(k.videoMaxUpload)
	if err != nil || vidMax == 0 {
		return nil, usagef("--video-max-upload: want a positive size such as 512MiB, got %q", k.videoMaxUpload)
	}
	if k.imageMaxPixels <= 0 {
		return nil, usagef("--image-max-pixels must be positive, got %d", k.imageMaxPixels)
	}
	if k.imageDecoding < 0 {
		return nil, usagef("--image-max-decoding must not be negative, got %d", k.imageDecoding)
	}
	if k.ffmpegTimeout <= 0 {
		return nil, usagef("--ffmpeg-timeout must be positive, got %s", k.ffmpegTimeout)
	}
	if k.webhookTimeout <= 0 {
		return nil, usagef("--webhook-timeout must be positive, got %s", k.webhookTimeout)
	}
	allow, err := webhooks.ParseNetworks(k.webhookAllow)
	if err != nil {
		return nil, usagef("--webhook-allow-networks: %v", err)
	}
	out := &app.Kinds{
		Images:   images.Options{Sizes: sizes, MaxUploadBytes: imgMax, MaxPixels: k.imageMaxPixels, MaxDecoding: k.imageDecoding},
		Videos:   videos.Options{FFmpeg: k.ffmpeg, Timeout: k.ffmpegTimeout, MaxUploadBytes: vidMax},
		Webhooks: webhooks.Options{Timeout: k.webhookTimeout, AllowNetworks: allow},
	}
	if err := out.Images.Validate(); err != nil {
		return nil, usagef("image settings: %v", err)
	}
	return out, nil
}

// kinds returns the kinds' settings for a running process: webhook
// requests go through tr's client spans, and every breaker transition is
// logged. A process that serves the API decodes images on half the CPUs
// by default; one that only works jobs, on all of them.
func (k *kindFlags) kinds(tr *tracing.Tracing, log *slog.Logger, serving bool) (*app.Kinds, error) {
	out, err := k.check()
	if err != nil {
		return nil, err
	}
	if out.Images.MaxDecoding == 0 && !serving {
		out.Images.MaxDecoding = runtime.GOMAXPROCS(0)
	}
	out.Webhooks.WrapTransport = tr.HTTPClient
	out.Webhooks.Breakers = resilience.NewBreakers(resilience.BreakerOptions{
		OnStateChange: func(host string, from, to resilience.State) {
			lvl := slog.LevelInfo
			if to == resilience.Open {
				lvl = slog.LevelWarn
			}
			log.Log(context.Background(), lvl, "webhook circuit breaker", "host", host, "from", from.String(), "to", to.String())
		},
	})
	return out, nil
}
