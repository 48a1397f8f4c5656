package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Handler works jobs of one kind. Work returns nil when the job is done;
// any other error fails the attempt (see [Permanent], [Snooze], [Cancel]).
// ctx is cancelled when the job's timeout passes, when the job is
// cancelled, or when the client shuts down; handlers should return soon
// after.
//
// Work runs on a goroutine that the client keeps and may use for later
// attempts. A handler that locks its OS thread (runtime.LockOSThread) must
// unlock it before it returns, or lock it on a goroutine of its own, so
// that no later attempt runs on a thread whose state it changed; likewise
// profiler labels set with pprof.SetGoroutineLabels outlive the attempt
// (pprof.Do restores them).
type Handler interface {
	Work(ctx context.Context, job *Job) error
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, job *Job) error

// Work calls f(ctx, job).
func (f HandlerFunc) Work(ctx context.Context, job *Job) error { return f(ctx, job) }

// ArgsValidator is implemented by handlers that can check a job's
// arguments at insert time. A client that knows the kind calls it before
// inserting, so bad arguments are refused with [ErrInvalid] instead of
// failing later in a worker.
type ArgsValidator interface {
	ValidateArgs(args json.RawMessage) error
}

// Typed returns a Handler that decodes the job's arguments into a T (unknown
// fields are an error) before calling fn. Arguments that do not decode fail
// the job permanently, and are refused at insert time by clients that know
// the kind. If T has a Validate() error method it is called too.
func Typed[T any](fn func(ctx context.Context, job *Job, args T) error) Handler {
	return typed[T]{fn: fn}
}

type typed[T any] struct {
	fn func(ctx context.Context, job *Job, args T) error
}

func decodeArgs[T any](raw json.RawMessage) (T, error) {
	var v T
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("%w: args: %v", ErrInvalid, err)
	}
	// Anything after the value, even a stray '}' that More does not
	// report, makes the arguments invalid.
	if _, err := dec.Token(); err != io.EOF {
		return v, fmt.Errorf("%w: args: trailing data after JSON value", ErrInvalid)
	}
	if val, ok := any(&v).(interface{ Validate() error }); ok {
		if err := val.Validate(); err != nil {
			return v, fmt.Errorf("%w: args: %v", ErrInvalid, err)
		}
	}
	return v, nil
}

func (t typed[T]) ValidateArgs(raw json.RawMessage) error {
	_, err := decodeArgs[T](raw)
	return err
}

func (t typed[T]) Work(ctx context.Context, job *Job) error {
	v, err := decodeArgs[T](job.Args)
	if err != nil {
		return Permanent(err)
	}
	return t.fn(ctx, job, v)
}

// KindConfig holds a kind's handler and its defaults.
type KindConfig struct {
	Handler Handler
	// Queue is where jobs of this kind go when they name none.
	Queue string
	// Retry is the kind's retry policy; zero fields take
	// [DefaultRetryPolicy]'s.
	Retry RetryPolicy
	// Timeout bounds one attempt; zero means the client's JobTimeout,
	// negative means none.
	Timeout time.Duration
	// Unavailable, when set, says why the kind cannot run here: inserts
	// of it are refused with [ErrKindUnavailable] and this reason.
	Unavailable error
}

// KindOption configures a kind at registration.
type KindOption func(*KindConfig)

// WithQueue sets the kind's default queue.
func WithQueue(q string) KindOption { return func(k *KindConfig) { k.Queue = q } }

// WithRetry sets the kind's retry policy.
func WithRetry(p RetryPolicy) KindOption { return func(k *KindConfig) { k.Retry = p } }

// WithTimeout sets the kind's per-attempt timeout.
func WithTimeout(d time.Duration) KindOption { return func(k *KindConfig) { k.Timeout = d } }

// WithUnavailable registers the kind as known but unable to run in this
// process, for the reason given (say, a program it runs is not
// installed). Inserting it fails with [ErrKindUnavailable] instead of
// leaving jobs that can never finish; listings show it with the reason.
// A nil reason leaves the kind available.
func WithUnavailable(reason error) KindOption {
	return func(k *KindConfig) { k.Unavailable = reason }
}

// Workers is a registry of handlers by kind. The zero value is not usable;
// create one with [NewWorkers]. It is safe for concurrent use.
type Workers struct {
	mu    sync.RWMutex
	kinds map[string]*KindConfig
}

// NewWorkers returns an empty registry.
func NewWorkers() *Workers { return &Workers{kinds: map[string]*KindConfig{}} }

// Handle registers h for kind. It panics if kind is not a valid name, h is
// nil, an option is invalid, or kind is already registered: these are
// programming errors caught at start-up.
func (w *Workers) Handle(kind string, h Handler, opts ...KindOption) {
	if !validName(kind, MaxKindLength) {
		panic(fmt.Sprintf("queue: invalid kind name %q", kind))
	}
	if h == nil {
		panic("queue: nil handler for kind " + kind)
	}
	kc := &KindConfig{Handler: h}
	for _, o := range opts {
		o(kc)
	}
	if err := kc.Retry.Validate(); err != nil {
		panic(fmt.Sprintf("queue: kind %s: %v", kind, err))
	}
	if kc.Queue != "" && !validName(kc.Queue, MaxQueueLength) {
		panic(fmt.Sprintf("queue: kind %s: invalid queue name %q", kind, kc.Queue))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.kinds[kind]; dup {
		panic("queue: kind registered twice: " + kind)
	}
	w.kinds[kind] = kc
}

// HandleFunc registers fn for kind; see [Workers.Handle].
func (w *Workers) HandleFunc(kind string, fn func(ctx context.Context, job *Job) error, opts ...KindOption) {
	w.Handle(kind, HandlerFunc(fn), opts...)
}

// Kind returns the configuration registered for kind.
func (w *Workers) Kind(kind string) (*KindConfig, bool) {
	if w == nil {
		return nil, false
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	k, ok := w.kinds[kind]
	return k, ok
}

// Kinds returns the registered kind names, sorted.
func (w *Workers) Kinds() []string {
	if w == nil {
		return nil
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]string, 0, len(w.kinds))
	for k := range w.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
