package queue

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"
)

func TestRetryPolicyDelay(t *testing.T) {
	const s = time.Second
	half := func() float64 { return 0.5 }
	zero := func() float64 { return 0 }
	cases := []struct {
		name    string
		p       RetryPolicy
		attempt int
		rnd     func() float64
		want    time.Duration
	}{
		{"default first", RetryPolicy{Jitter: -1}, 1, nil, 2 * s},
		{"default second", RetryPolicy{Jitter: -1}, 2, nil, 4 * s},
		{"default ninth", RetryPolicy{Jitter: -1}, 9, nil, 512 * s},
		{"default capped at 10m", RetryPolicy{Jitter: -1}, 10, nil, 10 * time.Minute},
		{"default jitter 20% x 0.5", RetryPolicy{}, 1, half, 1800 * time.Millisecond},
		{"default jitter drawing 0", RetryPolicy{}, 3, zero, 8 * s},
		{"attempt 0 counts as 1", RetryPolicy{Jitter: -1}, 0, nil, 2 * s},
		{"negative attempt counts as 1", RetryPolicy{Jitter: -1}, -5, nil, 2 * s},
		{"exponential base", RetryPolicy{BaseDelay: 10 * s, MaxDelay: time.Hour, Jitter: -1}, 3, nil, 40 * s},
		{"exponential cap", RetryPolicy{BaseDelay: 10 * s, MaxDelay: 25 * s, Jitter: -1}, 3, nil, 25 * s},
		{"exponential huge attempt", RetryPolicy{BaseDelay: s, MaxDelay: time.Hour, Jitter: -1}, 1000, nil, time.Hour},
		{"exponential max int attempt", RetryPolicy{BaseDelay: s, MaxDelay: time.Hour, Jitter: -1}, math.MaxInt, nil, time.Hour},
		{"fixed", RetryPolicy{Backoff: BackoffFixed, BaseDelay: 7 * s, Jitter: -1}, 5, nil, 7 * s},
		{"fixed first", RetryPolicy{Backoff: BackoffFixed, BaseDelay: 7 * s, Jitter: -1}, 1, nil, 7 * s},
		{"fixed capped", RetryPolicy{Backoff: BackoffFixed, BaseDelay: time.Hour, MaxDelay: time.Minute, Jitter: -1}, 1, nil, time.Minute},
		{"full jitter", RetryPolicy{Backoff: BackoffFixed, BaseDelay: 10 * s, Jitter: 1}, 1, half, 5 * s},
		{"quarter jitter", RetryPolicy{Backoff: BackoffFixed, BaseDelay: 8 * s, Jitter: 0.25}, 1, func() float64 { return 1 }, 6 * s},
	}
	for _, tc := range cases {
		if got := tc.p.Delay(tc.attempt, tc.rnd); got != tc.want {
			t.Errorf("%s: Delay(%d) = %s, want %s", tc.name, tc.attempt, got, tc.want)
		}
	}
}

func TestRetryPolicyDelayJitterRange(t *testing.T) {
	p := RetryPolicy{Backoff: BackoffFixed, BaseDelay: 10 * time.Second, Jitter: 0.2}
	for i := 0; i < 1000; i++ {
		if d := p.Delay(1, nil); d <= 8*time.Second || d > 10*time.Second {
			t.Fatalf("Delay with 20%% jitter = %s, want in (8s, 10s]", d)
		}
	}
}

func TestDefaultRetryPolicy(t *testing.T) {
	want := RetryPolicy{MaxAttempts: 10, Backoff: BackoffExponential, BaseDelay: 2 * time.Second, MaxDelay: 10 * time.Minute, Jitter: 0.2}
	if DefaultRetryPolicy != want {
		t.Errorf("DefaultRetryPolicy = %+v, want the documented %+v", DefaultRetryPolicy, want)
	}
	// "about 17 minutes from first failure to final failure".
	var total time.Duration
	for a := 1; a < DefaultRetryPolicy.MaxAttempts; a++ {
		total += RetryPolicy{Jitter: -1}.Delay(a, nil)
	}
	if total != 1022*time.Second {
		t.Errorf("default policy waits %s in all, documented as about 17 minutes (2s+4s+…+512s)", total)
	}
}

func TestRetryPolicyMerge(t *testing.T) {
	kind := RetryPolicy{MaxAttempts: 5, BaseDelay: 10 * time.Second, Jitter: -1}
	job := RetryPolicy{Backoff: BackoffFixed, MaxDelay: time.Minute}
	got := job.merge(kind.merge(DefaultRetryPolicy))
	want := RetryPolicy{MaxAttempts: 5, Backoff: BackoffFixed, BaseDelay: 10 * time.Second, MaxDelay: time.Minute, Jitter: -1}
	if got != want {
		t.Errorf("job over kind over default = %+v, want %+v", got, want)
	}
	if got := (RetryPolicy{}).merge(DefaultRetryPolicy); got != DefaultRetryPolicy {
		t.Errorf("zero policy merged = %+v, want the default", got)
	}
}

func TestRetryPolicyValidate(t *testing.T) {
	valid := []RetryPolicy{{}, DefaultRetryPolicy, {MaxAttempts: 1, Backoff: BackoffFixed, Jitter: -1}, {Jitter: 1}}
	for _, p := range valid {
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", p, err)
		}
	}
	invalid := []RetryPolicy{
		{MaxAttempts: -1}, {Backoff: "linear"}, {BaseDelay: -time.Second}, {MaxDelay: -time.Second},
		{Jitter: 1.01}, {Jitter: math.NaN()},
	}
	for _, p := range invalid {
		if err := p.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", p, err)
		}
	}
}

func TestRetryPolicyJSON(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 3, Backoff: BackoffFixed, BaseDelay: 1500 * time.Millisecond, MaxDelay: time.Minute, Jitter: -1}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"max_attempts":3,"backoff":"fixed","base_delay_ms":1500,"max_delay_ms":60000,"jitter":-1}`
	if string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
	var back RetryPolicy
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != p {
		t.Errorf("round trip = %+v, want %+v", back, p)
	}
}
