// Command asynq-bench runs kiln's two bench modes against asynq
// (github.com/hibiken/asynq) on Redis, through asynq's public API.
//
// It owns one Redis database index (15 by default) and runs FLUSHDB on it
// before each run; never point it at an index that holds other data.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/kilnhq/kiln/bench/compare/internal/harness"
)

type options struct {
	harness.Flags
	addr          string
	db            int
	checkInterval time.Duration
	enqueueConc   int
}

func main() {
	var o options
	fs := flag.NewFlagSet("asynq-bench", flag.ExitOnError)
	o.Register(fs)
	fs.StringVar(&o.addr, "redis", "127.0.0.1:6379", "Redis address")
	fs.IntVar(&o.db, "redis-db", 15, "Redis database index owned by the bench: FLUSHDB runs on it before each run")
	fs.DurationVar(&o.checkInterval, "task-check-interval", 0, "asynq Config.TaskCheckInterval (0 = asynq's default, 1s)")
	fs.IntVar(&o.enqueueConc, "enqueue-concurrency", 1, "throughput: goroutines calling Enqueue (1 = sequential)")
	_ = fs.Parse(os.Args[1:])
	if err := o.Validate(); err != nil {
		harness.Fatal(err)
	}
	if o.enqueueConc < 1 {
		harness.Fatal(errors.New("--enqueue-concurrency must be at least 1"))
	}
	ctx := context.Background()
	if err := flush(ctx, o); err != nil {
		harness.Fatal(err)
	}
	var res any
	var err error
	if o.Mode == "throughput" {
		res, err = throughput(ctx, o)
	} else {
		res, err = latency(ctx, o)
	}
	_ = flush(ctx, o) // leave the owned index empty
	if err != nil {
		harness.Fatal(err)
	}
	if err := harness.Print(res, o.JSON); err != nil {
		harness.Fatal(err)
	}
}

func (o options) redisOpt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: o.addr, DB: o.db}
}

func (o options) settings() string {
	ci := "default(1s)"
	if o.checkInterval > 0 {
		ci = o.checkInterval.String()
	}
	return fmt.Sprintf("asynq Concurrency=%d TaskCheckInterval=%s redis=%s db=%d", o.Workers, ci, o.addr, o.db)
}

func (o options) driver() string { return "redis" }

// flush empties the bench's own Redis database index.
func flush(ctx context.Context, o options) error {
	rc := redis.NewClient(&redis.Options{Addr: o.addr, DB: o.db})
	defer rc.Close()
	if err := rc.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("redis FLUSHDB on db %d: %w", o.db, err)
	}
	return nil
}

func (o options) newServer(q string) *asynq.Server {
	return asynq.NewServer(o.redisOpt(), asynq.Config{
		Concurrency:       o.Workers,
		Queues:            map[string]int{q: 1},
		TaskCheckInterval: o.checkInterval,
		LogLevel:          asynq.WarnLevel,
		ShutdownTimeout:   10 * time.Second,
	})
}

func throughput(ctx context.Context, o options) (*harness.Throughput, error) {
	q := "bench_" + harness.RandomSuffix()
	client := asynq.NewClient(o.redisOpt())
	defer client.Close()

	// Insert. asynq has no batch enqueue in its public API: one Enqueue
	// (one Redis round trip running a Lua script) per task.
	start := time.Now()
	var insertErr error
	if o.enqueueConc == 1 {
		for range o.Jobs {
			if _, err := client.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.Queue(q)); err != nil {
				return nil, fmt.Errorf("enqueue: %w", err)
			}
		}
	} else {
		var next atomic.Int64
		var once sync.Once
		var wg sync.WaitGroup
		for range o.enqueueConc {
			wg.Go(func() {
				for next.Add(1) <= int64(o.Jobs) {
					if _, err := client.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.Queue(q)); err != nil {
						once.Do(func() { insertErr = err })
						return
					}
				}
			})
		}
		wg.Wait()
		if insertErr != nil {
			return nil, fmt.Errorf("enqueue: %w", insertErr)
		}
	}
	insertDur := time.Since(start)

	// Work.
	var done atomic.Int64
	finished := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
		if done.Add(1) == int64(o.Jobs) {
			close(finished)
		}
		return nil
	})
	srv := o.newServer(q)
	start = time.Now()
	if err := srv.Start(mux); err != nil {
		return nil, err
	}
	select {
	case <-finished:
	case <-time.After(30 * time.Minute):
		srv.Shutdown()
		return nil, fmt.Errorf("only %d of %d tasks handled in 30m", done.Load(), o.Jobs)
	}
	workDur := time.Since(start)

	// The handler count is reached before asynq acknowledges the last
	// tasks in Redis; wait until the Inspector shows them all processed.
	insp := asynq.NewInspector(o.redisOpt())
	defer insp.Close()
	var info *asynq.QueueInfo
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		info, err = insp.GetQueueInfo(q)
		if err != nil {
			srv.Shutdown()
			return nil, fmt.Errorf("inspector: %w", err)
		}
		if info.Pending == 0 && info.Active == 0 && info.ProcessedTotal >= o.Jobs {
			break
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return nil, fmt.Errorf("inspector after 30s: pending=%d active=%d processed=%d of %d", info.Pending, info.Active, info.ProcessedTotal, o.Jobs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	drainDur := time.Since(start)
	srv.Shutdown()
	if info.ProcessedTotal != o.Jobs || info.FailedTotal != 0 || info.Size != 0 {
		return nil, fmt.Errorf("inspector: processed=%d failed=%d size=%d, want %d/0/0", info.ProcessedTotal, info.FailedTotal, info.Size, o.Jobs)
	}
	if got := done.Load(); got != int64(o.Jobs) {
		return nil, fmt.Errorf("handler ran %d times for %d tasks", got, o.Jobs)
	}
	method := "sequential Enqueue (no batch API)"
	if o.enqueueConc > 1 {
		method = fmt.Sprintf("Enqueue from %d goroutines (no batch API)", o.enqueueConc)
	}
	return &harness.Throughput{
		System: "asynq", Mode: "throughput", Driver: o.driver(), Jobs: o.Jobs, Workers: o.Workers,
		InsertJobsPerS: harness.Round(float64(o.Jobs) / insertDur.Seconds()),
		WorkJobsPerS:   harness.Round(float64(o.Jobs) / workDur.Seconds()),
		PeakRSSMB:      harness.PeakRSSMB(),
		InsertMethod:   method,
		Settings:       o.settings(),
		Extra: map[string]float64{
			// Clock stopped when the Inspector (polled every 5 ms after the
			// last handler call) showed every task processed.
			"work_jobs_per_s_inspector": harness.Round(float64(o.Jobs) / drainDur.Seconds()),
		},
	}, nil
}

func latency(ctx context.Context, o options) (*harness.Latency, error) {
	q := "bench_" + harness.RandomSuffix()
	rec := harness.NewRecorder(int(o.Rate*o.Duration.Seconds()) + 1)
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(_ context.Context, t *asynq.Task) error {
		now := time.Now()
		var a harness.PayloadArgs
		if err := json.Unmarshal(t.Payload(), &a); err != nil {
			return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
		}
		rec.Observe(now, a.T)
		return nil
	})
	srv := o.newServer(q)
	if err := srv.Start(mux); err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	client := asynq.NewClient(o.redisOpt())
	defer client.Close()
	total, p50, p95, p99, mx, err := harness.RunLatency(ctx, o.Rate, o.Duration, rec, func(ctx context.Context, ts int64) error {
		payload := []byte(`{"t":` + strconv.FormatInt(ts, 10) + `}`)
		_, err := client.EnqueueContext(ctx, asynq.NewTask("noop", payload), asynq.Queue(q))
		return err
	})
	if err != nil {
		return nil, err
	}
	return &harness.Latency{
		System: "asynq", Mode: "latency", Driver: o.driver(), Jobs: total, Rate: o.Rate,
		P50: p50, P95: p95, P99: p99, Max: mx, Settings: o.settings(),
	}, nil
}
