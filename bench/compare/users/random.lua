-- wrk script: GET /api/v1/users/{id} with a uniformly random id in 1..N.
--
--   wrk -t2 -c64 -d10s --latency -s random.lua http://127.0.0.1:8080 -- 10000
--
-- N is the first script argument, else $USERS_N, else 10000.
-- $USERS_TOKEN, when set, is sent as "Authorization: Bearer <token>".
-- At the end one line "WRK_JSON {...}" gives the run's numbers
-- (latencies in microseconds) for run-users.sh.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

function init(args)
  n = tonumber(args[1] or os.getenv("USERS_N") or "10000")
  if n == nil or n < 1 then
    error("N must be a positive number, got " .. tostring(args[1] or os.getenv("USERS_N")))
  end
  n = math.floor(n)
  local token = os.getenv("USERS_TOKEN")
  if token ~= nil and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  -- thread_no keeps the two threads' sequences apart.
  math.randomseed(os.time() * 1000 + (thread_no or 0))
end

function request()
  return wrk.format("GET", "/api/v1/users/" .. math.random(1, n))
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_s":%.3f,"requests_per_s":%.1f,"bytes":%d,' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, secs, summary.requests / secs, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
