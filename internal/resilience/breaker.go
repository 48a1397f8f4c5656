package resilience

import (
	"container/list"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kilnhq/kiln/internal/defaults"
)

// State is a circuit breaker's state.
type State int

// The states. A closed breaker lets calls through and counts failures;
// an open one refuses them until its cooldown ends; a half-open one lets
// a few probes through, closing on their success and opening again on a
// failure.
const (
	Closed State = iota
	Open
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText implements encoding.TextMarshaler, for JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is how a call let through by [Breakers.Allow] went.
type Result int

// The results.
const (
	// Success: the destination answered as it should (a client error
	// such as a 400 is the caller's fault, and a success here).
	Success Result = iota
	// Failure: the destination failed (refused, timed out, a 5xx).
	Failure
	// Ignore: the call says nothing about the destination (the caller
	// gave up); it only frees a half-open probe.
	Ignore
)

// ErrOpen is matched (errors.Is) by the [*OpenError] that
// [Breakers.Allow] returns for a destination whose breaker is open.
var ErrOpen = errors.New("circuit open")

// OpenError refuses a call to a destination whose breaker is open, or
// half-open with its probes already in flight.
type OpenError struct {
	Key string
	// Until is when the breaker next lets a probe through (or, while
	// probes are in flight, a good time to ask again): a caller with
	// work to do later should put it off until then.
	Until time.Time
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("circuit open for %s until %s", e.Key, e.Until.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// The defaults of [BreakerOptions]' zero fields.
const (
	DefaultConsecutiveFailures = 5
	DefaultCooldown            = 30 * time.Second
	DefaultHalfOpenProbes      = 1
	DefaultMinRequests         = 20
	DefaultWindow              = time.Minute
	DefaultMaxKeys             = 10000
)

// BreakerOptions configure [Breakers]. Zero fields take the defaults.
type BreakerOptions struct {
	// ConsecutiveFailures opens a breaker after that many failures in a
	// row (default 5).
	ConsecutiveFailures int
	// FailureRatio, if positive, also opens a breaker when at least that
	// fraction of the calls in the current Window failed, once the
	// window has seen MinRequests calls (default 20). Window defaults
	// to 1m; the counts restart at each window.
	FailureRatio float64
	MinRequests  int
	Window       time.Duration
	// Cooldown is how long a breaker stays open (default 30s).
	Cooldown time.Duration
	// HalfOpenProbes is how many calls a half-open breaker lets through
	// at once, and how many must succeed to close it (default 1).
	HalfOpenProbes int
	// MaxKeys bounds how many breakers are kept (default 10,000): past
	// it, the least recently used one is forgotten.
	MaxKeys int
	// Now tells the time; default time.Now.
	Now func() time.Time
	// OnStateChange, if set, is called after every transition, outside
	// any lock, in no guaranteed order across keys.
	OnStateChange func(key string, from, to State)
}

// Breakers is a set of circuit breakers keyed by destination (a host,
// say), created on first use. It is safe for concurrent use.
//
// Written here rather than taken from a library so that its clock can be
// injected and an open breaker can say when it will let a probe through;
// see docs/dependencies.md.
type Breakers struct {
	o  BreakerOptions
	mu sync.Mutex
	m  map[string]*list.Element // of *breaker
	// lru holds the breakers, most recently used first.
	lru *list.List
}

// breaker is one key's state. gen changes on every transition, so that
// results of calls let through before it are ignored.
type breaker struct {
	key                  string
	state                State
	gen                  uint64
	consecutive          int
	requests, failures   int
	windowStart          time.Time
	openUntil            time.Time
	inFlight, halfOpenOK int
	lastChange           time.Time
}

// NewBreakers returns an empty set of breakers configured by o.
func NewBreakers(o BreakerOptions) *Breakers {
	defaults.Positive(&o.ConsecutiveFailures, DefaultConsecutiveFailures)
	defaults.Positive(&o.MinRequests, DefaultMinRequests)
	defaults.Positive(&o.Window, DefaultWindow)
	defaults.Positive(&o.Cooldown, DefaultCooldown)
	defaults.Positive(&o.HalfOpenProbes, DefaultHalfOpenProbes)
	defaults.Positive(&o.MaxKeys, DefaultMaxKeys)
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Breakers{o: o, m: map[string]*list.Element{}, lru: list.New()}
}

// change is a transition to report after unlocking.
type change struct {
	key      string
	from, to State
}

func (b *Breakers) report(cs []change) {
	if b.o.OnStateChange == nil {
		return
	}
	for _, c := range cs {
		b.o.OnStateChange(c.key, c.from, c.to)
	}
}

// get returns key's breaker, creating it (and forgetting the least
// recently used one past MaxKeys) if needed, and marks it used.
func (b *Breakers) get(key string, now time.Time) *breaker {
	if e, ok := b.m[key]; ok {
		b.lru.MoveToFront(e)
		return e.Value.(*breaker)
	}
	for b.lru.Len() >= b.o.MaxKeys {
		old := b.lru.Back()
		delete(b.m, old.Value.(*breaker).key)
		b.lru.Remove(old)
	}
	br := &breaker{key: key, windowStart: now, lastChange: now}
	b.m[key] = b.lru.PushFront(br)
	return br
}

// set moves br to state s.
func (b *Breakers) set(br *breaker, s State, now time.Time, cs []change) []change {
	if br.state == s {
		return cs
	}
	cs = append(cs, change{br.key, br.state, s})
	br.state, br.gen, br.lastChange = s, br.gen+1, now
	br.consecutive, br.requests, br.failures, br.windowStart = 0, 0, 0, now
	br.inFlight, br.halfOpenOK = 0, 0
	br.openUntil = time.Time{}
	if s == Open {
		br.openUntil = now.Add(b.o.Cooldown)
	}
	return cs
}

// current brings br up to date at now: an open breaker whose cooldown
// has passed becomes half-open, and a closed one's window restarts.
func (b *Breakers) current(br *breaker, now time.Time, cs []change) []change {
	switch br.state {
	case Open:
		if !now.Before(br.openUntil) {
			cs = b.set(br, HalfOpen, now, cs)
		}
	case Closed:
		if now.Sub(br.windowStart) >= b.o.Window {
			br.requests, br.failures, br.windowStart = 0, 0, now
		}
	}
	return cs
}

// Allow asks to call key. When the breaker lets the call through, done
// must be called once with its [Result] (later calls are ignored); when
// it does not, err is an [*OpenError] (matching [ErrOpen]) saying when
// to come back, and the call must not be made.
func (b *Breakers) Allow(key string) (done func(Result), err error) {
	b.mu.Lock()
	now := b.o.Now()
	br := b.get(key, now)
	cs := b.current(br, now, nil)
	switch {
	case br.state == Open:
		err = &OpenError{Key: key, Until: br.openUntil}
	case br.state == HalfOpen && br.inFlight >= b.o.HalfOpenProbes:
		// The probes will decide soon; ask again in a while.
		err = &OpenError{Key: key, Until: now.Add(max(b.o.Cooldown/10, time.Millisecond))}
	default:
		if br.state == HalfOpen {
			br.inFlight++
		}
		gen := br.gen
		var once sync.Once
		done = func(r Result) { once.Do(func() { b.done(br, gen, r) }) }
	}
	b.mu.Unlock()
	b.report(cs)
	return done, err
}

// done records the result of a call let through in generation gen.
func (b *Breakers) done(br *breaker, gen uint64, r Result) {
	b.mu.Lock()
	now := b.o.Now()
	cs := b.current(br, now, nil)
	if br.gen != gen {
		// The breaker changed since the call was let through.
		b.mu.Unlock()
		b.report(cs)
		return
	}
	switch br.state {
	case Closed:
		switch r {
		case Success:
			br.requests++
			br.consecutive = 0
		case Failure:
			br.requests++
			br.failures++
			br.consecutive++
			ratio := b.o.FailureRatio > 0 && br.requests >= b.o.MinRequests &&
				float64(br.failures) >= b.o.FailureRatio*float64(br.requests)
			if br.consecutive >= b.o.ConsecutiveFailures || ratio {
				cs = b.set(br, Open, now, cs)
			}
		}
	case HalfOpen:
		br.inFlight--
		switch r {
		case Success:
			br.halfOpenOK++
			if br.halfOpenOK >= b.o.HalfOpenProbes {
				cs = b.set(br, Closed, now, cs)
			}
		case Failure:
			cs = b.set(br, Open, now, cs)
		}
	}
	b.mu.Unlock()
	b.report(cs)
}

// Execute calls fn through key's breaker: an [*OpenError] without
// calling it when the breaker is open, else fn's error. A nil error or a
// permanent one ([IsPermanent]: the destination answered, the request
// was wrong) counts as a success, any other error as a failure.
func (b *Breakers) Execute(key string, fn func() error) error {
	done, err := b.Allow(key)
	if err != nil {
		return err
	}
	r := Failure
	defer func() { done(r) }()
	err = fn()
	if err == nil || IsPermanent(err) {
		r = Success
	}
	return err
}

// BreakerState is a snapshot of one breaker.
type BreakerState struct {
	Key   string `json:"key"`
	State State  `json:"state"`
	// ConsecutiveFailures counts failures in a row while closed.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// Requests and Failures count the results of the current window
	// while closed.
	Requests int `json:"requests"`
	Failures int `json:"failures"`
	// OpenUntil is when an open breaker lets a probe through; zero
	// otherwise.
	OpenUntil time.Time `json:"open_until,omitzero"`
	// Since is when the breaker entered its state.
	Since time.Time `json:"since"`
}

func (br *breaker) snapshot() BreakerState {
	return BreakerState{
		Key: br.key, State: br.state, ConsecutiveFailures: br.consecutive,
		Requests: br.requests, Failures: br.failures, OpenUntil: br.openUntil, Since: br.lastChange,
	}
}

// State returns key's breaker as it is now, and whether there is one
// (a key never called, or forgotten, has none: it counts as closed).
func (b *Breakers) State(key string) (BreakerState, bool) {
	b.mu.Lock()
	e, ok := b.m[key]
	if !ok {
		b.mu.Unlock()
		return BreakerState{Key: key, State: Closed}, false
	}
	br := e.Value.(*breaker)
	cs := b.current(br, b.o.Now(), nil)
	s := br.snapshot()
	b.mu.Unlock()
	b.report(cs)
	return s, true
}

// States returns every breaker as it is now, sorted by key.
func (b *Breakers) States() []BreakerState {
	b.mu.Lock()
	now := b.o.Now()
	out := make([]BreakerState, 0, len(b.m))
	var cs []change
	for _, e := range b.m {
		br := e.Value.(*breaker)
		cs = b.current(br, now, cs)
		out = append(out, br.snapshot())
	}
	b.mu.Unlock()
	b.report(cs)
	slices.SortFunc(out, func(x, y BreakerState) int { return strings.Compare(x.Key, y.Key) })
	return out
}
