package resilience

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

// fakeTime is a clock that sleeping moves forward.
type fakeTime struct {
	now    time.Time
	sleeps []time.Duration
}

func newFakeTime() *fakeTime { return &fakeTime{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (f *fakeTime) Now() time.Time { return f.now }

func (f *fakeTime) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeTime) retry(r Retry) Retry {
	r.Sleep, r.Now = f.Sleep, f.Now
	if r.Rand == nil {
		r.Rand = func() float64 { return 0.5 }
	}
	return r
}

// failing returns an fn that fails its first n calls with err.
func failing(n int, err error, calls *int) func(context.Context) error {
	return func(context.Context) error {
		*calls++
		if *calls <= n {
			return err
		}
		return nil
	}
}

var errFlaky = errors.New("flaky")

func TestDoSucceedsAfterFailures(t *testing.T) {
	t.Parallel()
	ft := newFakeTime()
	calls := 0
	var seen []int
	r := ft.retry(Retry{MaxAttempts: 5, Base: 100 * time.Millisecond, Max: time.Second,
		OnRetry: func(n int, err error, _ time.Duration) { seen = append(seen, n) }})
	if err := Do(context.Background(), r, failing(3, errFlaky, &calls)); err != nil {
		t.Fatal(err)
	}
	if calls != 4 {
		t.Errorf("%d calls, want 4", calls)
	}
	// Full jitter with Rand 0.5: half of 100ms, 200ms, 400ms.
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}
	if fmt.Sprint(ft.sleeps) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", ft.sleeps, want)
	}
	if fmt.Sprint(seen) != "[1 2 3]" {
		t.Errorf("OnRetry saw %v", seen)
	}
}

func TestDoGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	ft := newFakeTime()
	calls := 0
	err := Do(context.Background(), ft.retry(Retry{MaxAttempts: 3}), failing(10, errFlaky, &calls))
	if !errors.Is(err, errFlaky) || calls != 3 || len(ft.sleeps) != 2 {
		t.Errorf("err %v after %d calls and %d waits", err, calls, len(ft.sleeps))
	}
	// The zero Retry makes 3 calls.
	calls = 0
	err = Do(context.Background(), ft.retry(Retry{}), failing(10, errFlaky, &calls))
	if !errors.Is(err, errFlaky) || calls != DefaultMaxAttempts {
		t.Errorf("default: err %v after %d calls", err, calls)
	}
}

func TestDoStopsOnPermanent(t *testing.T) {
	t.Parallel()
	for name, err := range map[string]error{
		"resilience": Permanent(errFlaky),
		"queue":      queue.Permanent(errFlaky),
		"wrapped":    fmt.Errorf("call: %w", Permanent(errFlaky)),
	} {
		ft := newFakeTime()
		calls := 0
		got := Do(context.Background(), ft.retry(Retry{MaxAttempts: 5}), failing(10, err, &calls))
		if calls != 1 || !errors.Is(got, errFlaky) || !IsPermanent(got) || len(ft.sleeps) != 0 {
			t.Errorf("%s: %d calls, err %v", name, calls, got)
		}
	}
	if Permanent(nil) != nil || IsPermanent(errFlaky) || IsPermanent(nil) {
		t.Error("Permanent(nil) or IsPermanent of a plain error")
	}
}

func TestDoMaxElapsed(t *testing.T) {
	t.Parallel()
	ft := newFakeTime()
	calls := 0
	// Rand 0.999: waits of ~1s, ~2s, ~4s; the third would end past 5s.
	r := ft.retry(Retry{MaxAttempts: 10, Base: time.Second, Max: time.Minute, MaxElapsed: 5 * time.Second,
		Rand: func() float64 { return 0.999 }})
	err := Do(context.Background(), r, failing(10, errFlaky, &calls))
	if !errors.Is(err, errFlaky) || calls != 3 || len(ft.sleeps) != 2 {
		t.Errorf("err %v after %d calls, waits %v", err, calls, ft.sleeps)
	}
}

func TestDoRetryAfterIsAMinimum(t *testing.T) {
	t.Parallel()
	ft := newFakeTime()
	calls := 0
	r := ft.retry(Retry{MaxAttempts: 3, Base: time.Second, Max: time.Minute})
	err := Do(context.Background(), r, func(context.Context) error {
		calls++
		switch calls {
		case 1:
			return RetryAfter(errFlaky, 7*time.Second) // more than the backoff's 0.5s
		case 2:
			return queue.RetryAfter(errFlaky, time.Millisecond) // less than the backoff's 1s
		}
		return nil
	})
	want := []time.Duration{7 * time.Second, time.Second}
	if err != nil || fmt.Sprint(ft.sleeps) != fmt.Sprint(want) {
		t.Errorf("err %v, waits %v, want %v", err, ft.sleeps, want)
	}
	if d, ok := RetryAfterHint(RetryAfter(errFlaky, -time.Second)); !ok || d != 0 {
		t.Errorf("negative hint: %v %v", d, ok)
	}
	if _, ok := RetryAfterHint(errFlaky); ok {
		t.Error("a plain error has a hint")
	}
	if RetryAfter(nil, time.Second) != nil {
		t.Error("RetryAfter(nil) is not nil")
	}
}

func TestDoContext(t *testing.T) {
	t.Parallel()
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	calls := 0
	r := Retry{MaxAttempts: 5, Sleep: func(ctx context.Context, d time.Duration) error {
		cancel(cause) // the wait is interrupted
		<-ctx.Done()
		return context.Cause(ctx)
	}}
	err := Do(ctx, r, failing(10, errFlaky, &calls))
	if calls != 1 || !errors.Is(err, cause) || !errors.Is(err, errFlaky) {
		t.Errorf("%d calls, err %v: want both the cause and the last error", calls, err)
	}
	// A context done before the first call: no call at all.
	calls = 0
	err = Do(ctx, Retry{}, failing(0, nil, &calls))
	if calls != 0 || !errors.Is(err, cause) {
		t.Errorf("done context: %d calls, err %v", calls, err)
	}
}

func TestDoRealSleep(t *testing.T) {
	t.Parallel()
	calls := 0
	start := time.Now()
	err := Do(context.Background(), Retry{MaxAttempts: 3, Base: time.Millisecond, Max: 2 * time.Millisecond}, failing(2, errFlaky, &calls))
	if err != nil || calls != 3 {
		t.Errorf("err %v after %d calls", err, calls)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %s", el)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err = Do(ctx, Retry{MaxAttempts: 5, Base: time.Hour, Max: time.Hour, Rand: func() float64 { return 0.9 }}, failing(10, errFlaky, &calls))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errFlaky) {
		t.Errorf("timeout during a wait: %v", err)
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	r := Retry{Base: time.Second, Max: 10 * time.Second}
	for n, want := range map[int]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 1000: 10 * time.Second} {
		if got := r.Ceiling(n); got != want {
			t.Errorf("Ceiling(%d) = %s, want %s", n, got, want)
		}
	}
	for _, f := range []float64{0, 0.25, 0.999999, 1, -1} {
		r.Rand = func() float64 { return f }
		d := r.Delay(3)
		if d < 0 || d >= 4*time.Second {
			t.Errorf("Delay(3) with rand %v = %s, outside [0, 4s)", f, d)
		}
	}
	r.Rand = func() float64 { return 0.25 }
	if d := r.Delay(3); d != time.Second {
		t.Errorf("Delay(3) with rand 0.25 = %s, want 1s", d)
	}
}
