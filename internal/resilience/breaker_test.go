package resilience

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/testutil"
)

// newClock returns a settable clock.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// call asks key and reports r; it returns Allow's error.
func call(b *Breakers, key string, r Result) error {
	done, err := b.Allow(key)
	if err != nil {
		return err
	}
	done(r)
	return nil
}

type transitions struct {
	mu  sync.Mutex
	log []string
}

func (tr *transitions) record(key string, from, to State) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.log = append(tr.log, fmt.Sprintf("%s:%s->%s", key, from, to))
}

func (tr *transitions) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return fmt.Sprint(tr.log)
}

func TestBreakerOpensAfterConsecutiveFailures(t *testing.T) {
	t.Parallel()
	c := newClock()
	var tr transitions
	b := NewBreakers(BreakerOptions{Now: c.Now, OnStateChange: tr.record})
	// A success resets the run of failures.
	for i := 0; i < 4; i++ {
		if err := call(b, "a", Failure); err != nil {
			t.Fatal(err)
		}
	}
	if err := call(b, "a", Success); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < DefaultConsecutiveFailures; i++ {
		if err := call(b, "a", Failure); err != nil {
			t.Fatalf("failure %d refused: %v", i+1, err)
		}
	}
	err := call(b, "a", Success)
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOpen) || oe.Key != "a" || !oe.Until.Equal(c.Now().Add(DefaultCooldown)) {
		t.Fatalf("after 5 failures: %v", err)
	}
	// Another key is unaffected; a client error is a success.
	if err := call(b, "b", Success); err != nil {
		t.Errorf("key b: %v", err)
	}
	if err := b.Execute("b", func() error { return Permanent(errors.New("400")) }); err == nil || errors.Is(err, ErrOpen) {
		t.Errorf("Execute: %v", err)
	}
	st, ok := b.State("a")
	if !ok || st.State != Open || !st.OpenUntil.Equal(oe.Until) {
		t.Errorf("State(a) = %+v, %v", st, ok)
	}
	if st, ok := b.State("never"); ok || st.State != Closed {
		t.Errorf("State(never) = %+v, %v", st, ok)
	}
	if got := tr.String(); got != "[a:closed->open]" {
		t.Errorf("transitions %s", got)
	}
}

func TestBreakerHalfOpen(t *testing.T) {
	t.Parallel()
	c := newClock()
	var tr transitions
	b := NewBreakers(BreakerOptions{Now: c.Now, OnStateChange: tr.record, ConsecutiveFailures: 2, Cooldown: 10 * time.Second})
	_ = call(b, "h", Failure)
	_ = call(b, "h", Failure)
	c.Advance(9 * time.Second)
	if err := call(b, "h", Success); !errors.Is(err, ErrOpen) {
		t.Fatalf("before the cooldown: %v", err)
	}
	c.Advance(time.Second)
	// One probe at a time.
	probe, err := b.Allow("h")
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	_, err = b.Allow("h")
	var oe *OpenError
	if !errors.As(err, &oe) || !oe.Until.After(c.Now()) || oe.Until.After(c.Now().Add(10*time.Second)) {
		t.Fatalf("second call while probing: %v", err)
	}
	// A failed probe opens it again for a whole cooldown.
	probe(Failure)
	probe(Success) // ignored: done counts once
	if st, _ := b.State("h"); st.State != Open || !st.OpenUntil.Equal(c.Now().Add(10*time.Second)) {
		t.Fatalf("after a failed probe: %+v", st)
	}
	c.Advance(10 * time.Second)
	if st, _ := b.State("h"); st.State != HalfOpen {
		t.Fatalf("after the second cooldown: %+v", st)
	}
	// A successful probe closes it.
	if err := call(b, "h", Success); err != nil {
		t.Fatal(err)
	}
	if err := call(b, "h", Failure); err != nil {
		t.Fatalf("closed again: %v", err)
	}
	want := "[h:closed->open h:open->half-open h:half-open->open h:open->half-open h:half-open->closed]"
	if got := tr.String(); got != want {
		t.Errorf("transitions\n %s\nwant\n %s", got, want)
	}
}

func TestBreakerIgnoreAndStaleResults(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := NewBreakers(BreakerOptions{Now: c.Now, ConsecutiveFailures: 1, Cooldown: time.Second})
	// A call let through while closed reports after the breaker opened:
	// ignored.
	slow, _ := b.Allow("k")
	_ = call(b, "k", Failure)
	c.Advance(time.Second)
	slow(Success)
	if st, _ := b.State("k"); st.State != HalfOpen {
		t.Fatalf("a stale success changed the breaker: %+v", st)
	}
	// Ignore frees the probe without deciding.
	probe, err := b.Allow("k")
	if err != nil {
		t.Fatal(err)
	}
	probe(Ignore)
	if st, _ := b.State("k"); st.State != HalfOpen {
		t.Fatalf("after Ignore: %+v", st)
	}
	if err := call(b, "k", Success); err != nil {
		t.Fatalf("the probe slot was not freed: %v", err)
	}
}

func TestBreakerFailureRatio(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := NewBreakers(BreakerOptions{Now: c.Now, FailureRatio: 0.5, MinRequests: 10, Window: time.Minute, ConsecutiveFailures: 100})
	// Alternate: 50% failures, never 100 in a row.
	for i := 0; i < 9; i++ {
		r := Success
		if i%2 == 0 {
			r = Failure
		}
		if err := call(b, "r", r); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	// The window restarts: the counts start over.
	c.Advance(time.Minute)
	for i := 0; i < 9; i++ {
		if err := call(b, "r", []Result{Failure, Success}[i%2]); err != nil {
			t.Fatalf("call %d of the second window: %v", i+1, err)
		}
	}
	if st, _ := b.State("r"); st.State != Closed || st.Requests != 9 || st.Failures != 5 {
		t.Fatalf("before the 10th call: %+v", st)
	}
	_ = call(b, "r", Success) // 5 of 10 failed
	if err := call(b, "r", Success); err != nil {
		t.Fatalf("the ratio is checked on failures only: %v", err)
	}
	_ = call(b, "r", Failure) // 6 of 12
	if st, _ := b.State("r"); st.State != Open {
		t.Fatalf("after 6 of 12 failures: %+v", st)
	}
}

func TestBreakersBounded(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := NewBreakers(BreakerOptions{Now: c.Now, MaxKeys: 3, ConsecutiveFailures: 1})
	_ = call(b, "a", Failure) // open
	_ = call(b, "b", Success)
	_ = call(b, "c", Success)
	if err := call(b, "a", Success); !errors.Is(err, ErrOpen) { // a is now the most recent
		t.Fatal(err)
	}
	_ = call(b, "d", Success) // forgets b
	var keys []string
	for _, s := range b.States() {
		keys = append(keys, s.Key+"="+s.State.String())
	}
	if got := fmt.Sprint(keys); got != "[a=open c=closed d=closed]" {
		t.Errorf("States = %s", got)
	}
}

func TestBreakersConcurrent(t *testing.T) {
	t.Parallel()
	b := NewBreakers(BreakerOptions{Cooldown: time.Millisecond, MaxKeys: 8})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				key := fmt.Sprint("k", (g+i)%12)
				_ = b.Execute(key, func() error {
					if i%3 == 0 {
						return errors.New("boom")
					}
					return nil
				})
				if i%100 == 0 {
					_ = b.States()
				}
			}
		}()
	}
	wg.Wait()
	if n := len(b.States()); n > 8 {
		t.Errorf("%d breakers kept, MaxKeys 8", n)
	}
}

func TestStateText(t *testing.T) {
	t.Parallel()
	for s, want := range map[State]string{Closed: "closed", Open: "open", HalfOpen: "half-open", State(9): "State(9)"} {
		if b, _ := s.MarshalText(); string(b) != want {
			t.Errorf("%d: %s", int(s), b)
		}
	}
	e := &OpenError{Key: "x", Until: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if e.Error() != "circuit open for x until 2026-01-02T03:04:05Z" {
		t.Errorf("%q", e.Error())
	}
}
