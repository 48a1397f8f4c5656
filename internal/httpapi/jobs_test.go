package httpapi

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnhq/kiln/internal/testutil"
	"github.com/kilnhq/kiln/queue"
)

func TestCreateAndGetJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.Do("POST", "/api/v1/jobs", `{"kind":"noop","args":{"n":1},"queue":"default","priority":5,"max_attempts":3,
		"backoff":{"type":"fixed","base_delay_ms":100,"max_delay_ms":1000,"jitter":0},"timeout_ms":5000}`)
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	j := decodeJob(t, r)
	if want := fmt.Sprintf("/api/v1/jobs/%d", j.ID); r.Header.Get("Location") != want {
		t.Errorf("Location %q, want %q", r.Header.Get("Location"), want)
	}
	if j.Kind != "noop" || j.Priority != 5 || j.MaxAttempts != 3 || j.TimeoutMS != 5000 || string(j.Args) != `{"n":1}` || j.Duplicate {
		t.Errorf("created job: %+v", j)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	done := e.waitState(strconv.FormatInt(j.ID, 10), queue.StateCompleted)
	if done.Attempt != 1 || done.FinalizedAt == nil || string(done.Result) != "null" {
		t.Errorf("completed job: %+v", done)
	}
	for _, key := range []string{"state", "attempt", "progress", "errors", "result"} {
		if _, ok := e.Do("GET", fmt.Sprintf("/api/v1/jobs/%d", j.ID), "").JSON(t)[key]; !ok {
			t.Errorf("GET job lacks %q", key)
		}
	}
}

func TestCreateScheduledAndDuplicate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.Do("POST", "/api/v1/jobs", `{"kind":"noop","run_at":"2999-01-01T00:00:00Z","unique_key":"k1","unique_for_ms":60000}`)
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	first := decodeJob(t, r)
	if first.State != queue.StateScheduled {
		t.Errorf("state %s, want scheduled", first.State)
	}
	r = e.Do("POST", "/api/v1/jobs", `{"kind":"noop","run_at":"2999-01-01T00:00:00Z","unique_key":"k1","unique_for_ms":60000}`)
	if r.Status != 200 {
		t.Fatalf("duplicate: %d %s", r.Status, r.Body)
	}
	dup := decodeJob(t, r)
	if !dup.Duplicate || dup.ID != first.ID || r.Header.Get("Location") != "" {
		t.Errorf("duplicate: %+v", dup)
	}
	r = e.Do("POST", "/api/v1/jobs", `{"kind":"noop","run_in_ms":3600000}`)
	if j := decodeJob(t, r); r.Status != 201 || j.State != queue.StateScheduled {
		t.Errorf("run_in_ms: %d %s", r.Status, r.Body)
	}
}

func TestCreateRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name, body string
		status     int
		fields     []string
	}{
		{"bad JSON", `{"kind":`, 400, nil},
		{"not JSON", `kind=noop`, 400, nil},
		{"unknown field", `{"kind":"noop","colour":"red"}`, 400, []string{"colour"}},
		{"wrong type", `{"kind":"noop","priority":"high"}`, 400, []string{"priority"}},
		{"wrong nested type", `{"kind":"noop","backoff":{"jitter":"lots"}}`, 400, []string{"backoff.jitter"}},
		{"trailing data", `{"kind":"noop"} {"kind":"noop"}`, 400, nil},
		{"array", `[{"kind":"noop"}]`, 400, nil},
		{"empty object is no kind", `{}`, 422, []string{"kind"}},
		{"every bad field", `{"kind":"a b","args":[1],"queue":"x y","priority":5000,"run_at":"tomorrow","run_in_ms":-1,
			"max_attempts":0,"backoff":{"type":"linear","base_delay_ms":0,"max_delay_ms":-5,"jitter":2},"timeout_ms":-1,
			"unique_for_ms":10}`, 422,
			[]string{"kind", "args", "queue", "priority", "run_at", "run_in_ms", "max_attempts", "backoff.type",
				"backoff.base_delay_ms", "backoff.max_delay_ms", "backoff.jitter", "timeout_ms", "unique_for_ms"}},
		{"unknown kind", `{"kind":"nope"}`, 422, []string{"kind"}},
		{"huge run_in", `{"kind":"noop","run_in_ms":9223372036854775807}`, 422, []string{"run_in_ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testutil.ProblemOf(t, e.Do("POST", "/api/v1/jobs", tc.body), tc.status)
			got := p.Fields()
			for _, f := range tc.fields {
				if !slices.Contains(got, f) {
					t.Errorf("errors %v do not name %q (%s)", got, f, p.Detail)
				}
			}
			if tc.status == 422 && len(got) != len(tc.fields) {
				t.Errorf("errors %v, want %v", got, tc.fields)
			}
		})
	}
	t.Run("content type", func(t *testing.T) {
		testutil.ProblemOf(t, e.Do("POST", "/api/v1/jobs", `{"kind":"noop"}`, "Content-Type", "text/plain"), 415)
		testutil.ProblemOf(t, e.Do("POST", "/api/v1/jobs", ""), 415)
		r := e.Do("POST", "/api/v1/jobs", `{"kind":"noop"}`, "Content-Type", "application/json; charset=utf-8")
		if r.Status != 201 {
			t.Errorf("charset parameter refused: %d %s", r.Status, r.Body)
		}
	})
	t.Run("too large", func(t *testing.T) {
		big := `{"kind":"noop","args":{"x":"` + strings.Repeat("a", 5000) + `"}}`
		testutil.ProblemOf(t, e.Do("POST", "/api/v1/jobs", big), 413)
	})
}

func TestBadJobIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, id := range []string{"abc", "0", "-1", "+1", "1.5", "99999999999999999999999", "0x10"} {
		for _, rt := range [][2]string{{"GET", ""}, {"DELETE", ""}, {"POST", "/retry"}, {"POST", "/cancel"}} {
			p := testutil.ProblemOf(t, e.Do(rt[0], "/api/v1/jobs/"+id+rt[1], ""), 400)
			if f := p.Fields(); len(f) != 1 || f[0] != "id" {
				t.Errorf("%s %s: errors %v, want id", rt[0], id, f)
			}
		}
	}
	// The detail names the operation and the job once.
	for _, tc := range []struct{ method, suffix, detail string }{
		{"GET", "", "get job 424242: job not found"},
		{"DELETE", "", "delete job 424242: job not found"},
		{"POST", "/retry", "retry job 424242: job not found"},
		{"POST", "/cancel", "cancel job 424242: job not found"},
	} {
		if p := testutil.ProblemOf(t, e.Do(tc.method, "/api/v1/jobs/424242"+tc.suffix, ""), 404); p.Detail != tc.detail {
			t.Errorf("%s %s: detail %q, want %q", tc.method, tc.suffix, p.Detail, tc.detail)
		}
	}
}

func TestListJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var ids []int64
	for i := range 5 {
		q := "alpha"
		if i%2 == 1 {
			q = "beta"
		}
		r := e.Do("POST", "/api/v1/jobs", `{"kind":"noop","queue":"`+q+`"}`)
		ids = append(ids, decodeJob(t, r).ID)
	}
	list := func(query string) ([]int64, any) {
		t.Helper()
		r := e.Do("GET", "/api/v1/jobs"+query, "")
		if r.Status != 200 {
			t.Fatalf("list %s: %d %s", query, r.Status, r.Body)
		}
		m := r.JSON(t)
		var got []int64
		for _, j := range m["jobs"].([]any) {
			got = append(got, int64(j.(map[string]any)["id"].(float64)))
		}
		return got, m["next"]
	}
	got, next := list("")
	if !slices.Equal(got, []int64{ids[4], ids[3], ids[2], ids[1], ids[0]}) || next != nil {
		t.Errorf("all: %v next %v", got, next)
	}
	got, _ = list("?queue=beta")
	if !slices.Equal(got, []int64{ids[3], ids[1]}) {
		t.Errorf("queue=beta: %v", got)
	}
	got, _ = list("?queue=alpha,beta&kind=noop&state=available&state=completed,scheduled")
	if len(got) != 5 {
		t.Errorf("comma and repeat: %v", got)
	}
	got, _ = list("?state=failed")
	if len(got) != 0 {
		t.Errorf("state=failed: %v", got)
	}
	// Pages of two walk every job once.
	var all []int64
	cursor := ""
	for range 10 {
		page, next := list("?limit=2" + cursor)
		all = append(all, page...)
		if next == nil {
			break
		}
		cursor = "&after=" + next.(string)
	}
	if len(all) != 5 || all[0] != ids[4] || all[4] != ids[0] {
		t.Errorf("paged: %v", all)
	}
	for query, param := range map[string]string{
		"?state=bogus": "state", "?limit=0": "limit", "?limit=abc": "limit", "?limit=1001": "limit",
		"?limit=1&limit=2": "limit", "?after=x": "after", "?after=-3": "after", "?colour=red": "colour",
		"?kind=a%20b": "kind", "?queue=%00": "queue",
	} {
		p := testutil.ProblemOf(t, e.Do("GET", "/api/v1/jobs"+query, ""), 400)
		if f := p.Fields(); len(f) != 1 || f[0] != param {
			t.Errorf("%s: errors %v, want %s", query, f, param)
		}
	}
	testutil.ProblemOf(t, e.Do("GET", "/api/v1/jobs?state=%zz", ""), 400)
}

func TestRetryCancelDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := decodeJob(t, e.Do("POST", "/api/v1/jobs", `{"kind":"block"}`))
	id := strconv.FormatInt(j.ID, 10)
	e.waitState(id, queue.StateRunning)

	if p := testutil.ProblemOf(t, e.Do("DELETE", "/api/v1/jobs/"+id, ""), 409); p.Detail != "delete job "+id+": job is in the wrong state for this operation: it is running; cancel it first" {
		t.Errorf("delete of a running job: detail %q", p.Detail)
	}
	if p := testutil.ProblemOf(t, e.Do("POST", "/api/v1/jobs/"+id+"/retry", ""), 409); p.Detail != "retry job "+id+": job is in the wrong state for this operation: it is running" {
		t.Errorf("retry of a running job: detail %q", p.Detail)
	}

	r := e.Do("POST", "/api/v1/jobs/"+id+"/cancel", "")
	if r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	// The running handler's context is cancelled, so the job ends.
	e.waitState(id, queue.StateCancelled)
	// Cancelling a finished job returns it unchanged.
	if r := e.Do("POST", "/api/v1/jobs/"+id+"/cancel", ""); r.Status != 200 || decodeJob(t, r).State != queue.StateCancelled {
		t.Errorf("cancel again: %d %s", r.Status, r.Body)
	}

	r = e.Do("POST", "/api/v1/jobs/"+id+"/retry", "")
	if r.Status != 200 {
		t.Fatalf("retry: %d %s", r.Status, r.Body)
	}
	e.waitState(id, queue.StateRunning)
	e.releaseJobs()
	e.waitState(id, queue.StateCompleted)

	r = e.Do("DELETE", "/api/v1/jobs/"+id, "")
	if r.Status != 200 || decodeJob(t, r).ID != j.ID {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	testutil.ProblemOf(t, e.Do("GET", "/api/v1/jobs/"+id, ""), 404)
	testutil.ProblemOf(t, e.Do("DELETE", "/api/v1/jobs/"+id, ""), 404)
}

func TestQueuesAndKinds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.Do("POST", "/api/v1/queues/default/pause", "")
	if r.Status != 200 || r.JSON(t)["paused"] != true {
		t.Fatalf("pause: %d %s", r.Status, r.Body)
	}
	j := decodeJob(t, e.Do("POST", "/api/v1/jobs", `{"kind":"noop"}`))

	r = e.Do("GET", "/api/v1/queues", "")
	if r.Status != 200 {
		t.Fatalf("queues: %d %s", r.Status, r.Body)
	}
	qs := r.JSON(t)["queues"].([]any)
	var def map[string]any
	for _, q := range qs {
		if q := q.(map[string]any); q["name"] == "default" {
			def = q
		}
	}
	if def == nil || def["paused"] != true || def["oldest_available"] == nil {
		t.Fatalf("default queue: %v", qs)
	}
	counts := def["counts"].(map[string]any)
	if len(counts) != len(queue.AllStates) || counts["available"] != 1.0 {
		t.Errorf("counts: %v", counts)
	}

	if r := e.Do("POST", "/api/v1/queues/default/resume", ""); r.Status != 200 || r.JSON(t)["paused"] != false {
		t.Fatalf("resume: %d %s", r.Status, r.Body)
	}
	e.waitState(strconv.FormatInt(j.ID, 10), queue.StateCompleted)
	p := testutil.ProblemOf(t, e.Do("POST", "/api/v1/queues/a%20b/pause", ""), 400)
	if f := p.Fields(); len(f) != 1 || f[0] != "name" {
		t.Errorf("bad queue name: errors %v", f)
	}

	r = e.Do("GET", "/api/v1/kinds", "")
	if r.Status != 200 || string(r.Body) != `{"kinds":["block","noop","video"],"unavailable":{"video":"ffmpeg not found on PATH"}}`+"\n" {
		t.Errorf("kinds: %d %s", r.Status, r.Body)
	}
	p = testutil.ProblemOf(t, e.Do("POST", "/api/v1/jobs", `{"kind":"video"}`), 422)
	if f := p.Fields(); len(f) != 1 || f[0] != "kind" || !strings.Contains(fmt.Sprint(p), "ffmpeg not found on PATH") {
		t.Errorf("enqueueing an unavailable kind: %v", p)
	}
}
