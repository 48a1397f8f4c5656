package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kilnhq/kiln/internal/jobkinds"
	"github.com/kilnhq/kiln/queue"
	"github.com/kilnhq/kiln/queue/queuetest"
	"github.com/kilnhq/kiln/queue/sqlitedriver"
)

// The test binary doubles as the kiln binary: started with
// KILN_TEST_RUN_MAIN=1 it runs kiln's real entry point (signals included)
// on its arguments instead of the tests, so the tests can run kiln as a
// subprocess and kill it without building a binary first. With
// KILN_TEST_HELPER set it runs a test-only helper instead (see helpers).
const (
	envRunMain = "KILN_TEST_RUN_MAIN"
	envHelper  = "KILN_TEST_HELPER"
)

// testOptions are the options of the kiln the tests run: the built-in
// kinds plus greet, added the way a Go program adds its own (WithKinds).
var testOptions = func() options {
	var o options
	WithKinds(func(w *queue.Workers) {
		w.Handle("greet", queue.Typed(func(ctx context.Context, job *queue.Job, a struct {
			Name string `json:"name"`
		}) error {
			return job.SetResult(map[string]string{"greeting": "hello, " + a.Name})
		}))
	})(&o)
	return o
}()

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		os.Exit(runMain(testOptions))
	}
	if h := os.Getenv(envHelper); h != "" {
		os.Exit(runHelper(h, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helpers are test-only modes of the subprocess.
var helpers = map[string]func(args []string) error{
	"insert-loop": insertLoop,
}

func runHelper(name string, args []string) int {
	h, ok := helpers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown test helper %q\n", name)
		return 2
	}
	if err := h(args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

// insertLoop (args: DB-PATH) inserts noop jobs one at a time and writes
// each id to stdout as soon as its insert has returned, until it is killed
// (or, to stay bounded, after 100,000 jobs or a minute).
func insertLoop(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: insert-loop DB-PATH")
	}
	d, err := sqlitedriver.Open(args[0], sqlitedriver.Options{})
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Migrate(ctx); err != nil {
		return err
	}
	w := queue.NewWorkers()
	jobkinds.Register(w)
	c, err := queue.New(queue.Config{Driver: d, Workers: w})
	if err != nil {
		return err
	}
	for range 100_000 {
		res, err := c.Insert(ctx, queue.InsertParams{Kind: "noop"})
		if err != nil {
			return err
		}
		// os.Stdout is unbuffered: the id is in the pipe when this returns.
		if _, err := fmt.Fprintln(os.Stdout, res.Job.ID); err != nil {
			return err
		}
	}
	return nil
}

// childEnv is the environment of a kiln subprocess: the test's own minus
// any KILN_ settings of the developer's shell, plus extra.
func childEnv(dir string, extra ...string) []string {
	var env []string
	// Under -race the subprocess would sleep a second at exit by default.
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "GORACE="); ok {
			gorace = v + " " + gorace
			continue
		}
		if strings.HasPrefix(kv, "KILN_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "TMPDIR=") {
			continue
		}
		env = append(env, kv)
	}
	// Tests run many serve processes at once: the admin listener takes
	// a free port rather than everyone's 127.0.0.1:6060.
	env = append(env, "TMPDIR="+dir, "GORACE="+gorace, "KILN_ADMIN_ADDR=127.0.0.1:0")
	return append(env, extra...)
}

// syncBuffer is a bytes.Buffer safe for a subprocess to write while the
// test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running kiln subprocess.
type proc struct {
	t      testing.TB
	name   string
	dir    string // working directory
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited and been reaped
	err    error         // from Wait; read after done
}

// procLifetime bounds every subprocess, whatever the test does.
const procLifetime = 3 * time.Minute

type procOpts struct {
	env    []string // extra environment, KEY=VALUE
	helper string   // run this test helper instead of kiln
}

// start runs kiln (or a helper) with args in a fresh working directory. The
// process is killed and reaped when the test ends, and killed after
// procLifetime in any case.
func start(t testing.TB, o procOpts, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	self, err := os.Executable() // absolute, unlike os.Args[0], so cmd.Dir cannot break it
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), procLifetime)
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Dir = dir
	mode := envRunMain + "=1"
	if o.helper != "" {
		mode = envHelper + "=" + o.helper
	}
	cmd.Env = childEnv(dir, append([]string{mode}, o.env...)...)
	// Die with the test binary if it is killed before its cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	p := &proc{t: t, name: "kiln " + strings.Join(args, " "), dir: dir, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.err = cmd.Wait()
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if s := p.stderr.String(); strings.Contains(s, "WARNING: DATA RACE") {
			t.Errorf("%s: data race reported:\n%s", p.name, s)
		}
	})
	return p
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
}

// kill SIGKILLs the process and waits until it is reaped, so that it can
// write nothing more.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit and returns its exit status
// (-1 if a signal ended it). It fails the test if the process is still
// running after d.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("%s still running after %s\nstdout:\n%s\nstderr:\n%s", p.name, d, p.stdout, p.stderr)
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		p.t.Fatalf("%s: %v", p.name, p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// result is the outcome of a kiln command run to completion.
type result struct {
	code           int
	stdout, stderr string
	dir            string // the working directory it ran in
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// kiln runs a kiln command to completion (at most a minute) with extra
// environment env.
func kiln(t testing.TB, env []string, args ...string) result {
	t.Helper()
	p := start(t, procOpts{env: env}, args...)
	code := p.wait(time.Minute)
	return result{code: code, stdout: p.stdout.String(), stderr: p.stderr.String(), dir: p.dir}
}

// openDB opens (and migrates) the database at path in the test process,
// with a client that inserts and inspects jobs but works none.
func openDB(t testing.TB, path string) *queue.Client {
	t.Helper()
	d, err := sqlitedriver.Open(path, sqlitedriver.Options{})
	return inspectClient(t, queuetest.Migrated(t, d, err))
}

// inspectClient returns a client on d that knows the built-in kinds and
// inserts and inspects jobs but works none.
func inspectClient(t testing.TB, d queue.Driver) *queue.Client {
	t.Helper()
	w := queue.NewWorkers()
	jobkinds.Register(w)
	c, err := queue.New(queue.Config{Driver: d, Workers: w})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond every interval until it returns true, failing the
// test with what() if d passes first or cond fails.
func waitFor(t testing.TB, d time.Duration, what func() string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what(), err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counts returns the number of jobs in each state, over all queues.
func counts(ctx context.Context, c *queue.Client) (map[queue.JobState]int64, error) {
	stats, err := c.Queues(ctx)
	if err != nil {
		return nil, err
	}
	out := map[queue.JobState]int64{}
	for _, s := range stats {
		for st, n := range s.Counts {
			out[st] += n
		}
	}
	return out, nil
}

// allJobs lists every job matching p, following the cursor.
func allJobs(ctx context.Context, t testing.TB, c *queue.Client, p queue.ListParams) []*queue.Job {
	t.Helper()
	p.Limit = 1000
	var out []*queue.Job
	for {
		page, err := c.List(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if len(page) < p.Limit {
			return out
		}
		p.AfterID = page[len(page)-1].ID
	}
}

// testCtx is a context that ends with the test, bounded by its deadline.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// noPanic fails the test if a command's stderr shows a Go panic.
func noPanic(t testing.TB, r result) {
	t.Helper()
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("stderr shows a panic:\n%s", r.stderr)
	}
}
