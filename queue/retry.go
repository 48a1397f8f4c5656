package queue

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is how the delay between attempts grows.
type Backoff string

// Backoff types.
const (
	// BackoffExponential doubles the delay after every attempt:
	// BaseDelay, 2×BaseDelay, 4×BaseDelay, … capped at MaxDelay.
	BackoffExponential Backoff = "exponential"
	// BackoffFixed waits BaseDelay between every attempt.
	BackoffFixed Backoff = "fixed"
)

// RetryPolicy says how often and how soon a failed job runs again. Zero
// fields take the value of [DefaultRetryPolicy].
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first included.
	// 1 means never retry. Values above math.MaxInt32 are stored as
	// math.MaxInt32.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Backoff is exponential or fixed.
	Backoff Backoff `json:"backoff,omitempty"`
	// BaseDelay is the first delay (exponential) or every delay (fixed).
	BaseDelay time.Duration `json:"base_delay,omitempty"`
	// MaxDelay caps any one delay.
	MaxDelay time.Duration `json:"max_delay,omitempty"`
	// Jitter in [0,1] removes up to that fraction of each delay at random,
	// so that jobs failing together do not retry together. Use a negative
	// value for no jitter (zero means the default).
	Jitter float64 `json:"jitter,omitempty"`
}

// DefaultRetryPolicy is used for every field a job and its kind leave
// zero: 10 attempts, exponential backoff from 2s capped at 10m, 20% jitter.
// Without jitter the nine delays between the ten attempts are 2s, 4s,
// 8s, … 512s: about 17 minutes from first failure to final failure.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts: 10,
	Backoff:     BackoffExponential,
	BaseDelay:   2 * time.Second,
	MaxDelay:    10 * time.Minute,
	Jitter:      0.2,
}

// merge returns p with its zero fields taken from d.
func (p RetryPolicy) merge(d RetryPolicy) RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.Backoff == "" {
		p.Backoff = d.Backoff
	}
	if p.BaseDelay == 0 {
		p.BaseDelay = d.BaseDelay
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = d.MaxDelay
	}
	if p.Jitter == 0 {
		p.Jitter = d.Jitter
	}
	return p
}

// Validate reports the first field of p that is out of range.
func (p RetryPolicy) Validate() error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("%w: retry max_attempts must be >= 1, got %d", ErrInvalid, p.MaxAttempts)
	case p.Backoff != "" && p.Backoff != BackoffExponential && p.Backoff != BackoffFixed:
		return fmt.Errorf("%w: retry backoff must be %q or %q, got %q", ErrInvalid, BackoffExponential, BackoffFixed, p.Backoff)
	case p.BaseDelay < 0:
		return fmt.Errorf("%w: retry base_delay must not be negative", ErrInvalid)
	case p.MaxDelay < 0:
		return fmt.Errorf("%w: retry max_delay must not be negative", ErrInvalid)
	case p.Jitter > 1 || math.IsNaN(p.Jitter):
		return fmt.Errorf("%w: retry jitter must be in [0,1], got %v", ErrInvalid, p.Jitter)
	}
	return nil
}

// Delay returns how long to wait after the given failed attempt (1 for the
// first) before the next one. rnd returns a number in [0,1); nil means
// math/rand.
func (p RetryPolicy) Delay(attempt int, rnd func() float64) time.Duration {
	p = p.merge(DefaultRetryPolicy)
	if attempt < 1 {
		attempt = 1
	}
	d := p.BaseDelay
	if p.Backoff == BackoffExponential {
		shift := attempt - 1
		if shift > 62 {
			shift = 62
		}
		f := float64(p.BaseDelay) * math.Pow(2, float64(shift))
		if f > float64(p.MaxDelay) || f > math.MaxInt64/2 {
			d = p.MaxDelay
		} else {
			d = time.Duration(f)
		}
	}
	if p.MaxDelay > 0 && d > p.MaxDelay {
		d = p.MaxDelay
	}
	if p.Jitter > 0 {
		if rnd == nil {
			rnd = rand.Float64
		}
		d -= time.Duration(float64(d) * p.Jitter * rnd())
	}
	return d
}

// retryPolicyJSON is the stored form of a RetryPolicy, with durations in
// milliseconds so that any language can read it.
type retryPolicyJSON struct {
	MaxAttempts int     `json:"max_attempts,omitempty"`
	Backoff     Backoff `json:"backoff,omitempty"`
	BaseDelayMS int64   `json:"base_delay_ms,omitempty"`
	MaxDelayMS  int64   `json:"max_delay_ms,omitempty"`
	Jitter      float64 `json:"jitter,omitempty"`
}

// MarshalJSON encodes durations as milliseconds (base_delay_ms, max_delay_ms).
func (p RetryPolicy) MarshalJSON() ([]byte, error) {
	return json.Marshal(retryPolicyJSON{
		MaxAttempts: p.MaxAttempts, Backoff: p.Backoff,
		BaseDelayMS: p.BaseDelay.Milliseconds(), MaxDelayMS: p.MaxDelay.Milliseconds(),
		Jitter: p.Jitter,
	})
}

// UnmarshalJSON decodes the form written by MarshalJSON.
func (p *RetryPolicy) UnmarshalJSON(b []byte) error {
	var j retryPolicyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*p = RetryPolicy{
		MaxAttempts: j.MaxAttempts, Backoff: j.Backoff,
		BaseDelay: time.Duration(j.BaseDelayMS) * time.Millisecond,
		MaxDelay:  time.Duration(j.MaxDelayMS) * time.Millisecond,
		Jitter:    j.Jitter,
	}
	return nil
}
