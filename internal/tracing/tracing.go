// Package tracing exports OpenTelemetry traces over OTLP/HTTP: a server
// span per API request, a consumer span per job attempt whose parent is
// the span that enqueued the job (the trace context travels in the job's
// metadata), and client spans for outgoing HTTP requests, so that one
// trace shows request → job → webhook.
//
// Tracing is on only when an OTLP endpoint is configured
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and
// OTEL_SDK_DISABLED is not "true". Off, [Setup] returns a [Tracing] whose
// hooks are nil, so that nothing is added to requests or jobs.
//
// The standard variables apply: OTEL_EXPORTER_OTLP_{,TRACES_}{ENDPOINT,
// HEADERS,TIMEOUT,COMPRESSION,CERTIFICATE,INSECURE} configure the
// exporter; OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG the sampler
// (default parentbased_always_on); OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES the resource (service.name defaults to kiln);
// OTEL_BSP_* the batch span processor. kiln speaks OTLP over HTTP
// (http/protobuf, or http/json): OTEL_EXPORTER_OTLP_PROTOCOL=grpc is
// refused.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of kiln's spans.
const ScopeName = "github.com/kilnhq/kiln"

// ServiceName is service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES name another.
const ServiceName = "kiln"

// The environment variables Setup reads itself; the exporter, the batch
// span processor and the resource read the others.
const (
	EnvEndpoint         = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint   = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol         = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol   = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvSDKDisabled      = "OTEL_SDK_DISABLED"
	EnvTracesExporter   = "OTEL_TRACES_EXPORTER"
	EnvTracesSampler    = "OTEL_TRACES_SAMPLER"
	EnvTracesSamplerArg = "OTEL_TRACES_SAMPLER_ARG"
)

// Options configures [Setup]. The zero value reads everything from the
// environment.
type Options struct {
	// Endpoint, if set, is the OTLP/HTTP base URL spans are sent to
	// (http://127.0.0.1:4318 sends to http://127.0.0.1:4318/v1/traces),
	// whatever the environment says; tracing is then on unless
	// OTEL_SDK_DISABLED is true.
	Endpoint string
	// Exporter, if set, receives the spans instead of an OTLP exporter
	// (tests and benchmarks); tracing is then on unless OTEL_SDK_DISABLED
	// is true.
	Exporter sdktrace.SpanExporter
	// Sampler, if set, replaces the one OTEL_TRACES_SAMPLER names.
	Sampler sdktrace.Sampler
	// Version is service.version (default: the module version in the
	// binary's build information, or "unknown").
	Version string
	// Logger receives export errors (rate-limited); nil discards them.
	Logger *slog.Logger
}

// Tracing is the tracing of one process. A nil *Tracing, and the one
// [Setup] returns when tracing is off, is disabled: its hooks are nil,
// HTTPClient returns its argument, and Shutdown does nothing.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// envConfig is what Setup takes from the environment.
type envConfig struct {
	enabled bool
	sampler sdktrace.Sampler
	// samplerName names the sampler for the startup log.
	samplerName string
}

// Check validates the tracing variables of the environment without side
// effects, so that a mistake is reported before anything starts.
func Check() error {
	_, err := readEnv(os.Getenv, false)
	return err
}

// readEnv interprets the variables kiln reads itself. configured says
// whether the caller already chose where spans go (Options.Endpoint or
// Options.Exporter).
func readEnv(getenv func(string) string, configured bool) (envConfig, error) {
	var c envConfig
	if v := strings.TrimSpace(getenv(EnvSDKDisabled)); strings.EqualFold(v, "true") {
		return c, nil
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv(EnvTracesExporter))); v {
	case "", "otlp":
	case "none":
		if !configured {
			return c, nil
		}
	default:
		return c, fmt.Errorf("%s=%q: kiln exports traces over OTLP only (otlp or none)", EnvTracesExporter, v)
	}
	ep, tep := strings.TrimSpace(getenv(EnvEndpoint)), strings.TrimSpace(getenv(EnvTracesEndpoint))
	if !configured && ep == "" && tep == "" {
		return c, nil
	}
	for _, e := range []struct{ name, v string }{{EnvEndpoint, ep}, {EnvTracesEndpoint, tep}} {
		if e.v == "" {
			continue
		}
		if _, err := parseEndpoint(e.v); err != nil {
			return c, fmt.Errorf("%s: %w", e.name, err)
		}
	}
	protocol, from := strings.TrimSpace(getenv(EnvTracesProtocol)), EnvTracesProtocol
	if protocol == "" {
		protocol, from = strings.TrimSpace(getenv(EnvProtocol)), EnvProtocol
	}
	switch protocol {
	case "", "http/protobuf", "http/json":
	case "grpc":
		return c, fmt.Errorf("%s=grpc: kiln speaks OTLP over HTTP only; set it to http/protobuf (or http/json) and point the endpoint at the collector's OTLP/HTTP port, usually 4318", from)
	default:
		return c, fmt.Errorf("%s=%q: kiln speaks OTLP over HTTP: http/protobuf or http/json", from, protocol)
	}
	s, name, err := parseSampler(getenv(EnvTracesSampler), getenv(EnvTracesSamplerArg))
	if err != nil {
		return c, err
	}
	c.enabled, c.sampler, c.samplerName = true, s, name
	return c, nil
}

// parseEndpoint checks that s is an http or https URL with a host, as
// the OTLP endpoint variables must be.
func parseEndpoint(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http:// or https:// URL like http://127.0.0.1:4318", s)
	}
	return u, nil
}

// parseSampler interprets OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// as the specification lists them. Unlike the SDK, which falls back to a
// default on a mistake, it refuses unknown names and bad ratios.
func parseSampler(name, arg string) (sdktrace.Sampler, string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	arg = strings.TrimSpace(arg)
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 || r != r {
			return 0, fmt.Errorf("%s=%q: want a sampling ratio from 0 to 1", EnvTracesSamplerArg, arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), "parentbased_always_on", nil
	case "always_on":
		return sdktrace.AlwaysSample(), name, nil
	case "always_off":
		return sdktrace.NeverSample(), name, nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), name, nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, "", err
		}
		s := sdktrace.TraceIDRatioBased(r)
		if name == "parentbased_traceidratio" {
			s = sdktrace.ParentBased(s)
		}
		return s, name + "=" + strconv.FormatFloat(r, 'g', -1, 64), nil
	}
	return nil, "", fmt.Errorf("%s=%q: kiln supports always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off and parentbased_traceidratio", EnvTracesSampler, name)
}

// Setup starts tracing if the environment (or opts) asks for it, and
// returns a disabled [Tracing] otherwise. Enabled, it also makes its
// tracer provider, the W3C trace-context and baggage propagator, and an
// error handler that logs export failures (rate-limited) the
// process-wide OpenTelemetry globals, for libraries that trace through
// them. Call Shutdown to flush the spans still buffered.
func Setup(ctx context.Context, opts Options) (*Tracing, error) {
	env, err := readEnv(os.Getenv, opts.Endpoint != "" || opts.Exporter != nil)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	if !env.enabled {
		return &Tracing{}, nil
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sampler := env.sampler
	if opts.Sampler != nil {
		sampler = opts.Sampler
	}
	exp := opts.Exporter
	if exp == nil {
		var eo []otlptracehttp.Option
		if opts.Endpoint != "" {
			u, err := parseEndpoint(opts.Endpoint)
			if err != nil {
				return nil, fmt.Errorf("tracing: endpoint: %w", err)
			}
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
			eo = append(eo, otlptracehttp.WithEndpointURL(u.String()))
		}
		exp, err = otlptracehttp.New(ctx, eo...)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
		}
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(ServiceName), semconv.ServiceVersion(version(opts.Version))),
		resource.WithHost(),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		if !errors.Is(err, resource.ErrPartialResource) || res == nil {
			_ = exp.Shutdown(ctx)
			return nil, fmt.Errorf("tracing: resource: %w", err)
		}
		log.Warn("tracing: some resource attributes were left out", "err", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(prop)
	otel.SetErrorHandler(&errorLog{log: log, every: time.Minute})
	name := env.samplerName
	if opts.Sampler != nil {
		name = opts.Sampler.Description()
	}
	log.Info("tracing on", "sampler", name)
	return &Tracing{tp: tp, tracer: tp.Tracer(ScopeName), prop: prop}, nil
}

// version returns v, or the module version of the binary, or "unknown".
func version(v string) string {
	if v != "" {
		return v
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.tp != nil }

// ForceFlush exports the spans that have ended so far.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.tp.ForceFlush(ctx); err != nil {
		return fmt.Errorf("tracing: flush: %w", err)
	}
	return nil
}

// Shutdown exports the spans still buffered and stops exporting; spans
// started afterwards are dropped. Bound it with ctx: an unreachable
// collector is retried until ctx is done.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// errorLog logs OpenTelemetry's errors (failed exports, dropped spans) at
// most once per every, with the number of errors left out in between, so
// that an unreachable collector does not flood the log.
type errorLog struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	last    time.Time
	skipped int
}

// Handle logs err unless another error was logged less than every ago.
func (e *errorLog) Handle(err error) {
	e.mu.Lock()
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < e.every {
		e.skipped++
		e.mu.Unlock()
		return
	}
	skipped := e.skipped
	e.last, e.skipped = now, 0
	e.mu.Unlock()
	e.log.Warn("tracing: spans not exported", "err", err, "errors_not_logged", skipped)
}
