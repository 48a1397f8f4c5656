// bullmq-bench runs kiln bench's two modes against BullMQ (Node.js, Redis)
// through BullMQ's public API, measured the way internal/bench/bench.go
// measures kiln, and prints the same JSON shape as the Go programs in
// bench/compare (last stdout line with --json).
//
// It owns one Redis database index (14 by default) and runs FLUSHDB on it
// before and after each run; never point --redis-db at an index that holds
// other data.
//
//   node bullmq-bench.mjs --mode throughput --jobs 50000 --workers 100 --json
//   node bullmq-bench.mjs --mode latency --rate 200 --duration 10s --json
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const require = createRequire(import.meta.url);
const bullmqVersion = require('bullmq/package.json').version;
const ioredisVersion = require('ioredis/package.json').version;

// ---- flags: kiln bench's names, defaults and limits --------------------

// parseDuration accepts Go's time.ParseDuration syntax ("10s", "1m30s",
// "500ms", "1.5h") and returns milliseconds.
function parseDuration(s) {
  const units = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  if (s === '0') return 0;
  let ms = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) throw new Error(`invalid duration "${s}"`);
    ms += parseFloat(m[1]) * units[m[2]];
    pos = re.lastIndex;
  }
  if (pos === 0) throw new Error(`invalid duration "${s}"`);
  return ms;
}

function parseFlags(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      mode: { type: 'string', default: 'throughput' },
      jobs: { type: 'string', default: '20000' },
      workers: { type: 'string', default: '100' },
      rate: { type: 'string', default: '200' },
      duration: { type: 'string', default: '10s' },
      json: { type: 'boolean', default: false },
      redis: { type: 'string', default: '127.0.0.1:6379' },
      'redis-db': { type: 'string', default: '14' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(`usage: node bullmq-bench.mjs [flags]
  --mode throughput|latency   (default throughput)
  --jobs N                    throughput: jobs to insert and work (default 20000)
  --workers N                 Worker concurrency (default 100)
  --rate R                    latency: inserts per second (default 200)
  --duration D                latency: how long to insert, Go syntax (default 10s)
  --json                      print one JSON object as the last line
  --redis HOST:PORT           Redis address (default 127.0.0.1:6379)
  --redis-db N                Redis database index owned by the bench, FLUSHDB before and after (default 14)`);
    process.exit(0);
  }
  const int = (name) => {
    const v = Number(values[name]);
    if (!Number.isInteger(v)) throw new Error(`--${name} must be an integer, got "${values[name]}"`);
    return v;
  };
  const f = {
    mode: values.mode,
    jobs: int('jobs'),
    workers: int('workers'),
    rate: Number(values.rate),
    durationMs: parseDuration(values.duration),
    json: values.json,
    redis: values.redis,
    db: int('redis-db'),
  };
  if (f.mode !== 'throughput' && f.mode !== 'latency') {
    throw new Error(`--mode must be throughput or latency, got "${f.mode}"`);
  } else if (f.jobs < 1 || f.jobs > 10_000_000) {
    throw new Error('--jobs must be between 1 and 10000000');
  } else if (f.workers < 1 || f.workers > 10000) {
    throw new Error('--workers must be between 1 and 10000');
  } else if (!(f.rate > 0 && f.rate <= 100000)) {
    throw new Error('--rate must be in (0, 100000]');
  } else if (!(f.durationMs > 0 && f.durationMs <= 24 * 3600e3)) {
    throw new Error('--duration must be positive and at most 24h');
  } else if (f.db < 0 || f.db > 15) {
    throw new Error('--redis-db must be between 0 and 15');
  }
  const [host, port] = f.redis.split(':');
  f.host = host || '127.0.0.1';
  f.port = Number(port || 6379);
  return f;
}

// ---- shared helpers, as in internal/harness --------------------------------

const round = (v) => Math.floor(v * 10 + 0.5) / 10;
const round3 = (v) => Math.floor(v * 1000 + 0.5) / 1000;

// percentile is nearest-rank on an ascending array, as kiln's bench.Percentile.
function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  const i = Math.trunc(sorted.length * p + 0.999999) - 1;
  return sorted[Math.max(0, Math.min(i, sorted.length - 1))];
}

// peakRSSMB is the process's peak resident set size in MiB (getrusage
// ru_maxrss, KiB on Linux): the Node process only, not Redis.
const peakRSSMB = () => round(process.resourceUsage().maxRSS / 1024);

// nowMs is wall-clock milliseconds with sub-millisecond precision; both
// sides of the latency measurement run in this process.
const nowMs = () => performance.timeOrigin + performance.now();

const connection = (f) => ({ host: f.host, port: f.port, db: f.db, maxRetriesPerRequest: null });

function settings(f) {
  return `bullmq ${bullmqVersion} Worker concurrency=${f.workers} other options default ` +
    `(drainDelay 5s, stalledInterval 30s, removeOnComplete false) ioredis ${ioredisVersion} ` +
    `node ${process.version} redis=${f.host}:${f.port} db=${f.db}`;
}

// flush empties the bench's own Redis database index.
async function flush(f) {
  const rc = new IORedis({ ...connection(f), lazyConnect: true });
  try {
    await rc.connect();
    await rc.flushdb();
  } catch (err) {
    throw new Error(`redis FLUSHDB on db ${f.db}: ${err.message}`);
  } finally {
    rc.disconnect();
  }
}

// ---- throughput -------------------------------------------------------------

async function throughput(f) {
  const name = `bench_${randomBytes(4).toString('hex')}`;
  const queue = new Queue(name, { connection: connection(f) });
  try {
    await queue.waitUntilReady();

    // Insert: addBulk (one pipeline of add-job scripts) in chunks of 10,000,
    // as kiln inserts in chunks of 10,000.
    const chunk = 10000;
    let start = performance.now();
    for (let left = f.jobs; left > 0;) {
      const n = Math.min(left, chunk);
      const jobs = new Array(n);
      for (let i = 0; i < n; i++) jobs[i] = { name: 'noop', data: {} };
      await queue.addBulk(jobs);
      left -= n;
    }
    const insertMs = performance.now() - start;

    // Work: the clock starts just before run(); it stops at the N-th
    // 'completed' event, which the Worker emits after the job was moved to
    // the completed set in Redis.
    let done = 0;
    let failed = 0;
    let finish;
    const finished = new Promise((resolve) => { finish = resolve; });
    const worker = new Worker(name, async () => {}, {
      connection: connection(f),
      concurrency: f.workers,
      autorun: false,
    });
    worker.on('completed', () => {
      if (++done === f.jobs) finish();
    });
    worker.on('failed', () => { failed++; });
    worker.on('error', (err) => console.error('worker error:', err.message));
    start = performance.now();
    const running = worker.run();
    const timeout = sleep(30 * 60e3, 'timeout', { ref: false });
    if ((await Promise.race([finished, timeout])) === 'timeout') {
      await worker.close(true);
      throw new Error(`only ${done} of ${f.jobs} jobs completed in 30m`);
    }
    const workMs = performance.now() - start;
    await worker.close();
    await running;

    // Verify in Redis.
    const counts = await queue.getJobCounts('completed', 'failed', 'wait', 'active', 'delayed', 'prioritized');
    if (counts.completed !== f.jobs || failed !== 0) {
      throw new Error(`getJobCounts: ${JSON.stringify(counts)} (failed events ${failed}), want completed=${f.jobs}`);
    }
    return {
      system: 'bullmq', mode: 'throughput', driver: 'redis', jobs: f.jobs, workers: f.workers,
      insert_jobs_per_s: round(f.jobs / (insertMs / 1000)),
      work_jobs_per_s: round(f.jobs / (workMs / 1000)),
      peak_rss_mb: peakRSSMB(),
      insert_method: `Queue.addBulk, chunks of ${chunk}`,
      settings: settings(f),
    };
  } finally {
    await queue.close();
  }
}

// ---- latency ----------------------------------------------------------------

async function latency(f) {
  const name = `bench_${randomBytes(4).toString('hex')}`;
  const total = Math.trunc(f.rate * (f.durationMs / 1000));
  if (total < 1) throw new Error(`${f.rate} jobs/s for ${f.durationMs}ms inserts no job; raise the rate or the duration`);
  const lat = [];
  const worker = new Worker(name, async (job) => {
    const now = nowMs();
    lat.push(now - job.data.t);
  }, { connection: connection(f), concurrency: f.workers });
  worker.on('error', (err) => console.error('worker error:', err.message));
  const queue = new Queue(name, { connection: connection(f) });
  try {
    await Promise.all([worker.waitUntilReady(), queue.waitUntilReady()]);
    // Let the idle Worker reach its blocking wait before the first insert.
    await sleep(200);

    // One add at a time at f.rate/s, scheduled by absolute time like the
    // Go harness: insert i is due at start + i*interval.
    const interval = 1000 / f.rate;
    const start = performance.now();
    for (let i = 0; i < total; i++) {
      const d = start + i * interval - performance.now();
      if (d > 0) await sleep(d);
      await queue.add('noop', { t: nowMs() });
    }
    const deadline = performance.now() + 30e3;
    while (lat.length < total) {
      if (performance.now() > deadline) throw new Error(`only ${lat.length} of ${total} jobs started within 30s`);
      await sleep(10);
    }
    lat.sort((a, b) => a - b);
    return {
      system: 'bullmq', mode: 'latency', driver: 'redis', jobs: total, rate: f.rate,
      p50_ms: round3(percentile(lat, 0.50)), p95_ms: round3(percentile(lat, 0.95)),
      p99_ms: round3(percentile(lat, 0.99)), max_ms: round3(lat[lat.length - 1]),
      settings: settings(f),
    };
  } finally {
    await worker.close();
    await queue.close();
  }
}

// ---- main -------------------------------------------------------------------

function print(res, asJSON) {
  if (asJSON) {
    console.log(JSON.stringify(res));
    return;
  }
  for (const k of Object.keys(res).sort()) console.log(`${k.padEnd(18)} ${res[k]}`);
}

async function main() {
  let f;
  try {
    f = parseFlags(process.argv.slice(2));
  } catch (err) {
    console.error('error:', err.message);
    process.exit(2);
  }
  await flush(f);
  let res;
  let failure;
  try {
    res = f.mode === 'throughput' ? await throughput(f) : await latency(f);
  } catch (err) {
    failure = err;
  }
  try {
    await flush(f); // leave the owned index empty
  } catch (err) {
    failure ??= err;
  }
  if (failure) {
    console.error('error:', failure.message);
    process.exit(1);
  }
  print(res, f.json);
  process.exit(0);
}

await main();
