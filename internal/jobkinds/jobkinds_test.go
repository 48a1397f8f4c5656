package jobkinds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/kilnhq/kiln/queue"
)

func handler(t testing.TB, kind string) queue.Handler {
	t.Helper()
	w := queue.NewWorkers()
	Register(w)
	kc, ok := w.Kind(kind)
	if !ok {
		t.Fatalf("kind %s is not registered", kind)
	}
	return kc.Handler
}

func validator(t testing.TB, kind string) queue.ArgsValidator {
	t.Helper()
	v, ok := handler(t, kind).(queue.ArgsValidator)
	if !ok {
		t.Fatalf("kind %s does not validate its arguments at insert time", kind)
	}
	return v
}

func TestRegister(t *testing.T) {
	w := queue.NewWorkers()
	Register(w)
	got := w.Kinds()
	want := []string{"fail", "noop", "sleep"}
	if len(got) != len(want) {
		t.Fatalf("kinds %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("kinds %v, want %v", got, want)
		}
	}
}

func TestValidateArgs(t *testing.T) {
	for _, tc := range []struct {
		kind, args string
		ok         bool
	}{
		{"sleep", `{"ms":0}`, true},
		{"sleep", `{"ms":86400000}`, true},
		{"sleep", ``, true},
		{"sleep", `{}`, true},
		{"sleep", `{"ms":86400001}`, false},
		{"sleep", `{"ms":-1}`, false},
		{"sleep", `{"ms":"x"}`, false},
		{"sleep", `{"ms":1.5}`, false},
		{"sleep", `{"ms":1,"extra":true}`, false},
		{"sleep", `[1]`, false},
		{"sleep", `{"ms":1} {"ms":2}`, false},
		{"fail", `{"times":3,"permanent":true}`, true},
		{"fail", `{"times":1000}`, true},
		{"fail", `{"times":1001}`, false},
		{"fail", `{"times":-1}`, false},
		{"fail", `{"permanent":"yes"}`, false},
	} {
		err := validator(t, tc.kind).ValidateArgs(json.RawMessage(tc.args))
		if (err == nil) != tc.ok {
			t.Errorf("%s %s: ValidateArgs = %v, want ok=%v", tc.kind, tc.args, err, tc.ok)
		}
		if err != nil && !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("%s %s: %v does not wrap queue.ErrInvalid", tc.kind, tc.args, err)
		}
	}
}

// FuzzValidateArgs checks that argument validation never panics, refuses
// anything that is not valid JSON (a stray '}' or ']' after the value
// included), and of valid JSON accepts only arguments that decode and pass
// Validate.
func FuzzValidateArgs(f *testing.F) {
	for _, s := range []string{
		`{"ms":10}`, `{"ms":-1}`, `{"ms":"x"}`, `{"ms":1e309}`, `{"ms":null}`, `null`, ``, `[]`,
		`{"times":2,"permanent":true}`, `{"times":99999999999999999999}`, `{"ms":1}{`, "\x00", `{"MS":5}`, `null}`, `{"ms":1}]`,
	} {
		f.Add(s)
	}
	sleepV, failV := validator(f, "sleep"), validator(f, "fail")
	handlers := map[string]queue.Handler{"sleep": handler(f, "sleep"), "fail": handler(f, "fail")}
	done, cancel := context.WithCancel(context.Background())
	cancel() // a sleep handler given good arguments returns at once
	f.Fuzz(func(t *testing.T, s string) {
		raw := json.RawMessage(s)
		// A worker given arguments the validator refuses fails the job
		// permanently instead of retrying it.
		for kind, h := range handlers {
			verr := validator(t, kind).ValidateArgs(raw)
			werr := h.Work(done, &queue.Job{ID: 1, Kind: kind, Attempt: 1, MaxAttempts: 3, Args: raw})
			if verr != nil && (!queue.IsPermanent(werr) || !errors.Is(werr, queue.ErrInvalid)) {
				t.Fatalf("%s %q: validator says %v but the worker returned %v", kind, s, verr, werr)
			}
		}
		if len(bytes.TrimSpace(raw)) > 0 && !json.Valid(raw) {
			if sleepV.ValidateArgs(raw) == nil || failV.ValidateArgs(raw) == nil {
				t.Fatalf("arguments %q are not valid JSON but were accepted", s)
			}
			return
		}
		if err := sleepV.ValidateArgs(raw); err == nil {
			var a SleepArgs
			if len(bytes.TrimSpace(raw)) > 0 { // empty arguments mean {}
				if err := json.Unmarshal(raw, &a); err != nil {
					t.Fatalf("sleep accepted %q, which does not decode: %v", s, err)
				}
			}
			if err := a.Validate(); err != nil {
				t.Fatalf("sleep accepted %q: %v", s, err)
			}
		}
		if err := failV.ValidateArgs(raw); err == nil {
			var a FailArgs
			if len(bytes.TrimSpace(raw)) > 0 { // empty arguments mean {}
				if err := json.Unmarshal(raw, &a); err != nil {
					t.Fatalf("fail accepted %q, which does not decode: %v", s, err)
				}
			}
			if err := a.Validate(); err != nil {
				t.Fatalf("fail accepted %q: %v", s, err)
			}
		}
	})
}

func work(t *testing.T, ctx context.Context, kind string, attempt int, args string) error {
	t.Helper()
	return handler(t, kind).Work(ctx, &queue.Job{ID: 1, Kind: kind, Attempt: attempt, MaxAttempts: 10, Args: json.RawMessage(args)})
}

func TestNoop(t *testing.T) {
	if err := work(t, context.Background(), "noop", 1, `{"anything":[1,2]}`); err != nil {
		t.Fatal(err)
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	if err := work(t, ctx, "sleep", 1, `{"ms":30}`); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Errorf("sleep 30ms returned after %s", took)
	}

	// Both the short and the progress-reporting long path stop when the
	// context is cancelled, and say why.
	for _, ms := range []string{"500", "60000"} {
		cause := errors.New("shutting down")
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(20*time.Millisecond, func() { cancel(cause) })
		start := time.Now()
		err := work(t, ctx, "sleep", 1, `{"ms":`+ms+`}`)
		if !errors.Is(err, cause) {
			t.Errorf("sleep %sms cancelled: %v, want the cancellation cause", ms, err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("sleep %sms took %s to notice cancellation", ms, took)
		}
		cancel(nil)
	}

	// Bad arguments fail the job permanently in the worker too.
	if err := work(t, ctx, "sleep", 1, `{"ms":-5}`); !queue.IsPermanent(err) || !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("sleep with bad args: %v, want a permanent invalid-args error", err)
	}
}

func TestFail(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args    string
		attempt int
		fails   bool
		perm    bool
	}{
		{`{"times":2}`, 1, true, false},
		{`{"times":2}`, 2, true, false},
		{`{"times":2}`, 3, false, false},
		{`{"times":0}`, 1, false, false},
		{`{"times":1,"permanent":true}`, 1, true, true},
		{`{"times":1,"permanent":true}`, 2, false, false},
	} {
		err := work(t, ctx, "fail", tc.attempt, tc.args)
		if (err != nil) != tc.fails || queue.IsPermanent(err) != tc.perm {
			t.Errorf("fail %s on attempt %d: %v; want fails=%v permanent=%v", tc.args, tc.attempt, err, tc.fails, tc.perm)
		}
	}
}
