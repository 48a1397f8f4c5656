package idempotency

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/database"
	"github.com/kilnhq/kiln/internal/database/dbtest"
	"github.com/kilnhq/kiln/internal/httpapi"
	"github.com/kilnhq/kiln/internal/testutil"
)

// work does its work through database.Once: it inserts a row naming the
// call into probe_work and answers with the call that did the work and
// the call that answers. Header X-Probe-Block blocks the first call before
// the work; X-Probe-Crash panics after it, as a process that dies between
// its commit and its response.
func (p *probe) work(w http.ResponseWriter, r *http.Request) {
	n := p.calls.Add(1)
	if r.Header.Get("X-Probe-Block") != "" && n == 1 {
		p.entered <- n
		<-p.release
	}
	ctx := r.Context()
	type outcome struct{ Call int64 }
	out, err := database.Once(ctx, p.db, func(tx *sql.Tx) (outcome, error) {
		_, err := tx.ExecContext(ctx, p.db.Rebind("INSERT INTO probe_work (call) VALUES (?)"), n)
		return outcome{Call: n}, err
	})
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if r.Header.Get("X-Probe-Crash") != "" {
		panic("the process dies after its commit")
	}
	httpapi.WriteJSON(w, r, http.StatusCreated, map[string]any{"call": out.Call, "answered_by": n})
}

// upload answers with the SHA-256 and length of the body it reads.
func (p *probe) upload(w http.ResponseWriter, r *http.Request) {
	p.calls.Add(1)
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, r, http.StatusOK, map[string]any{"sha256": hex.EncodeToString(h.Sum(nil)), "size": n})
}

// workPath is the probe route that records its call in probe_work.
const workPath = "/api/v1/probe/work"

// newWorkInstance creates the probe_work table and returns an instance
// on e whose clock is the one returned.
func newWorkInstance(t *testing.T, e *dbtest.Env) (*instance, *testutil.Clock) {
	t.Helper()
	if _, err := e.DB.W.Exec("CREATE TABLE probe_work (call INTEGER NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	c := newClock()
	return newInstance(t, e, setup{opts: Options{Now: c.Now}}), c
}

func (in *instance) countWork() int {
	in.t.Helper()
	var n int
	if err := in.env.DB.R.QueryRow("SELECT count(*) FROM probe_work").Scan(&n); err != nil {
		in.t.Fatal(err)
	}
	return n
}

// answeredBy returns the call that answered a /probe/work response.
func (r response) answeredBy(t *testing.T) int64 {
	t.Helper()
	var v struct {
		AnsweredBy int64 `json:"answered_by"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("status %d, body %q: %v", r.Status, r.Body, err)
	}
	return v.AnsweredBy
}

// TestCommittedWorkIsReturnedNotRedone: a request that committed its work
// and died before its response was stored is answered, on a repeat, with
// that work, which is not done again.
func TestCommittedWorkIsReturnedNotRedone(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		in, c := newWorkInstance(t, e)

		crashed := in.post(workPath, `{"n":1}`, append(key(`"w"`), "X-Probe-Crash", "1")...)
		if crashed.Status != http.StatusInternalServerError {
			t.Fatalf("crashing call: status %d: %s", crashed.Status, crashed.Body)
		}
		if n := in.countWork(); n != 1 {
			t.Fatalf("%d rows of work after the crashing call, want 1", n)
		}
		// Right after the commit the key is held, as its response may
		// still be on its way.
		in.post(workPath, `{"n":1}`, key(`"w"`)...).problem(t, http.StatusConflict, httpapi.CodeConflict)

		c.Advance(committedLock + time.Second)
		recovered := in.post(workPath, `{"n":1}`, key(`"w"`)...)
		if recovered.Status != http.StatusCreated || recovered.call(t) != 1 || !recovered.replayed() {
			t.Fatalf("repeat after the crash: status %d, replayed %v: %s; want the work of call 1, replayed", recovered.Status, recovered.replayed(), recovered.Body)
		}
		if by := recovered.answeredBy(t); by != 2 {
			t.Fatalf("answered by call %d, want 2 (the busy repeat ran no handler)", by)
		}
		again := in.post(workPath, `{"n":1}`, key(`"w"`)...)
		if again.Status != http.StatusCreated || !again.replayed() || string(again.Body) != string(recovered.Body) {
			t.Fatalf("next repeat: status %d, replayed %v: %s; want the stored %s", again.Status, again.replayed(), again.Body, recovered.Body)
		}
		if n := in.countWork(); n != 1 {
			t.Fatalf("%d rows of work after the repeats, want 1", n)
		}
		in.post(workPath, `{"n":2}`, key(`"w"`)...).problem(t, http.StatusUnprocessableEntity, httpapi.CodeUnprocessable)

		// Once the record expires, the key is new again: new work.
		c.Advance(DefaultTTL)
		fresh := in.post(workPath, `{"n":1}`, key(`"w"`)...)
		if fresh.Status != http.StatusCreated || fresh.replayed() || fresh.call(t) != 3 {
			t.Fatalf("after expiry: status %d, replayed %v: %s; want new work by call 3", fresh.Status, fresh.replayed(), fresh.Body)
		}
		if n := in.countWork(); n != 2 {
			t.Fatalf("%d rows of work after expiry, want 2", n)
		}
	})
}

// TestTakenOverRequestDoesNoWork: a request that outlives its lock, and
// whose key a repeat took over, has its work rolled back and answers 409;
// the work is done once, by the repeat.
func TestTakenOverRequestDoesNoWork(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, e *dbtest.Env) {
		in, c := newWorkInstance(t, e)
		slow := make(chan response, 1)
		go func() { slow <- in.post(workPath, `{}`, append(key(`"t"`), "X-Probe-Block", "1")...) }()
		<-in.probe.entered

		c.Advance(DefaultLockTimeout + time.Second)
		repeat := in.post(workPath, `{}`, key(`"t"`)...)
		if repeat.Status != http.StatusCreated || repeat.call(t) != 2 {
			t.Fatalf("repeat that takes the key over: status %d: %s", repeat.Status, repeat.Body)
		}
		close(in.probe.release)
		fields := (<-slow).problem(t, http.StatusConflict, httpapi.CodeConflict)
		if len(fields) != 0 {
			t.Fatalf("fields %v", fields)
		}
		if n := in.countWork(); n != 1 {
			t.Fatalf("%d rows of work, want 1 (the repeat's)", n)
		}
		again := in.post(workPath, `{}`, key(`"t"`)...)
		if !again.replayed() || string(again.Body) != string(repeat.Body) {
			t.Fatalf("third request: replayed %v, %s; want the repeat's %s", again.replayed(), again.Body, repeat.Body)
		}
	})
}

// filler reads as an endless run of one byte.
type filler byte

func (f filler) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(f)
	}
	return len(p), nil
}

// TestKeyedUploadIsNotHeldInMemory: the fingerprint of a large keyed body
// is taken as it is spooled to a file, so the request allocates within a
// few MiB of the same request without a key, and the handler reads the
// same bytes. Not parallel: it reads the process's allocation counter.
func TestKeyedUploadIsNotHeldInMemory(t *testing.T) {
	spool := t.TempDir()
	in := newInstance(t, dbtest.SQLite(t), setup{opts: Options{SpoolDir: spool}})
	const size = 64 << 20
	send := func(b byte, header ...string) (response, uint64) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r := in.send("/api/v1/probe/upload", io.LimitReader(filler(b), size), header...)
		runtime.ReadMemStats(&after)
		return r, after.TotalAlloc - before.TotalAlloc
	}
	plain, plainAlloc := send('a')
	keyed, keyedAlloc := send('a', key(`"upload"`)...)
	t.Logf("a %d MiB upload allocated %.1f MiB without a key, %.1f MiB with one", size>>20, float64(plainAlloc)/(1<<20), float64(keyedAlloc)/(1<<20))
	if plain.Status != http.StatusOK || keyed.Status != http.StatusOK || string(plain.Body) != string(keyed.Body) {
		t.Fatalf("the handler read different bodies: %d %s, keyed %d %s", plain.Status, plain.Body, keyed.Status, keyed.Body)
	}
	if keyedAlloc > plainAlloc+8<<20 {
		t.Fatalf("the keyed upload allocated %d bytes, %d more than without a key", keyedAlloc, keyedAlloc-plainAlloc)
	}
	if left, err := os.ReadDir(spool); err != nil || len(left) != 0 {
		t.Fatalf("spool directory after the request: %v, %v", left, err)
	}

	again, _ := send('a', key(`"upload"`)...)
	if !again.replayed() || string(again.Body) != string(keyed.Body) {
		t.Fatalf("repeat: replayed %v, %s", again.replayed(), again.Body)
	}
	other, _ := send('b', key(`"upload"`)...)
	other.problem(t, http.StatusUnprocessableEntity, httpapi.CodeUnprocessable)
	if n := in.probe.calls.Load(); n != 2 {
		t.Fatalf("the handler ran %d times, want 2", n)
	}
}

// TestKeyedUploadOverTheLimit: a large keyed body over the route's limit
// is refused with 413 while it is spooled, and leaves no file behind.
func TestKeyedUploadOverTheLimit(t *testing.T) {
	t.Parallel()
	spool := t.TempDir()
	in := newInstance(t, dbtest.SQLite(t), setup{opts: Options{SpoolDir: spool}, bodyLimit: 3 << 20})
	r := in.send("/api/v1/probe/status/201", io.LimitReader(filler('x'), 4<<20), key(`"too-big"`)...)
	r.problem(t, http.StatusRequestEntityTooLarge, httpapi.CodeTooLarge)
	if left, err := os.ReadDir(spool); err != nil || len(left) != 0 {
		t.Fatalf("spool directory after the request: %v, %v", left, err)
	}
	if n := in.countKeys(); n != 0 {
		t.Fatalf("%d keys recorded, want 0", n)
	}
}
