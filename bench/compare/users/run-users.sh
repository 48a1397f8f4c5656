#!/usr/bin/env bash
# Compares GET /api/v1/users/{id} on PostgreSQL across
#   kiln       kiln serve at its default log level (info)
#   kiln-warn  kiln serve --log-level warn
#   kiln-off   kiln serve with metrics, the runtime monitor, slow logs and
#              the admin listener off (the observability overhead baseline)
#   kiln-otel  kiln serve with tracing on too, exporting to a local OTLP sink
#              (cmd/otlpsink), sampling OTEL_SAMPLE (default 0.1) of traces
#   kiln-otel-all  the same, sampling every trace
#   bare       cmd/bareusers: net/http + pgxpool, the same query
#   express    node/express-users: Express 4 + pg under cluster
# with wrk (random ids, users/random.lua), ROUNDS rounds interleaved.
#
# It creates a fresh schema, lets `kiln migrate` create the users table in
# it, seeds USERS users with generate_series, then per round and system:
# starts the server, waits until it answers, warms it up, runs
# `wrk -t2 -c64 -d10s --latency`, reads the CPU time the server used
# during it (per 1,000 requests: the cost of a request, steadier than
# requests/s on a shared machine) and its peak RSS (VmHWM; both summed
# over its processes) and stops it. One JSON line per run goes
# to stdout and to OUT; a table of medians follows. Server and wrk output
# go to files under LOGDIR. The schema is dropped on exit.
#
# Usage: run-users.sh [--systems kiln,bare,express] [--rounds 3]
#          [--duration 10s] [--threads 2] [--connections 64] [--warmup 3s]
#          [--users 10000] [--db URL] [--out FILE] [--keep-schema]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
compare=$(cd "$here/.." && pwd)
repo=$(cd "$compare/../.." && pwd)
. "$compare/lib.sh"

SYSTEMS=${SYSTEMS:-kiln,bare,express}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
WARMUP=${WARMUP:-3s}
USERS=${USERS:-10000}
DB=${DB:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
BIN=${BIN:-/tmp/kiln-users-bench}
OUT=${OUT:-}
LOGDIR=${LOGDIR:-}
MAX_LOAD=${MAX_LOAD:-1.0} # wait before a run while the 1-minute load is above this
MAX_WAIT=${MAX_WAIT:-120} # ... but at most this many seconds
KEEP_SCHEMA=0
PORT_BASE=${PORT_BASE:-18090}


while (($#)); do
	case $1 in
	--systems) SYSTEMS=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--threads) THREADS=$2; shift 2 ;;
	--connections) CONNECTIONS=$2; shift 2 ;;
	--warmup) WARMUP=$2; shift 2 ;;
	--users) USERS=$2; shift 2 ;;
	--db) DB=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--keep-schema) KEEP_SCHEMA=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

IFS=, read -r -a systems <<<"$SYSTEMS"
has() { [[ ",$SYSTEMS," == *",$1,"* ]]; }
for s in "${systems[@]}"; do
	case $s in kiln | kiln-warn | kiln-off | kiln-otel | kiln-otel-all | bare | express) ;; *) echo "unknown system $s (want kiln, kiln-warn, kiln-off, kiln-otel, kiln-otel-all, bare, express)" >&2; exit 2 ;; esac
done

need() { # command, how to get it
	command -v "$1" >/dev/null || { echo "$1 not found: $2" >&2; exit 1; }
}
need wrk "install it (Debian/Ubuntu: apt-get install -y wrk; macOS: brew install wrk)"
need psql "install the PostgreSQL client (Debian/Ubuntu: apt-get install -y postgresql-client)"
need jq "install jq (apt-get install -y jq)"
need curl "install curl (apt-get install -y curl)"
need go "install Go 1.26"
if has express; then
	need node "install Node.js 20+"
	need npm "install npm"
fi

mkdir -p "$BIN"
LOGDIR=${LOGDIR:-$BIN/logs-$(date +%Y%m%dT%H%M%S)}
mkdir -p "$LOGDIR"
OUT=${OUT:-$LOGDIR/runs.jsonl}
echo "logs in $LOGDIR, runs appended to $OUT" >&2

# Build. kiln is always built: its migration creates the users table.
(cd "$repo" && go build -o "$BIN/kiln" ./cmd/kiln)
(cd "$compare" && go build -o "$BIN/bareusers" ./cmd/bareusers && go build -o "$BIN/otlpsink" ./cmd/otlpsink)
if has express; then
	(cd "$compare/node/express-users" && npm ci --no-audit --no-fund >"$LOGDIR/npm-ci.log" 2>&1) ||
		{ echo "npm ci failed; see $LOGDIR/npm-ci.log" >&2; exit 1; }
fi

# with_param URL KEY=VALUE appends a query parameter.
with_param() { if [[ $1 == *\?* ]]; then echo "$1&$2"; else echo "$1?$2"; fi; }

schema=users_bench_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
kiln_db=$(with_param "$DB" "kiln_schema=$schema")

pids=() # servers still running
cleanup() {
	local p
	for p in "${pids[@]}"; do stop_server "$p"; done
	if ((KEEP_SCHEMA)); then
		echo "schema $schema kept" >&2
	else
		psql "$DB" -qX -v ON_ERROR_STOP=1 -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_server PID stops a server and its children: SIGTERM, then SIGKILL
# after 10 s.
stop_server() {
	local pid=$1 all i
	all=$(descendants "$pid")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
	wait "$pid" 2>/dev/null || true
	local keep=()
	for p in "${pids[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
	pids=("${keep[@]+"${keep[@]}"}")
}

echo "creating schema $schema with $USERS users" >&2
psql "$DB" -qX -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $schema" >/dev/null
"$BIN/kiln" migrate --db "$kiln_db" >"$LOGDIR/migrate.log" 2>&1 ||
	{ echo "kiln migrate failed; see $LOGDIR/migrate.log" >&2; exit 1; }
psql "$DB" -qX -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET search_path = $schema;
INSERT INTO users (email, name, created_at, updated_at)
SELECT 'user' || i || '@example.com', 'User ' || i,
       now() - i * interval '1 minute', now() - i * interval '1 second'
FROM generate_series(1, $USERS) AS i;
VACUUM ANALYZE users;
SQL
[[ $(psql "$DB" -qXAt -c "SELECT count(*) || ' ' || min(id) || ' ' || max(id) FROM $schema.users") == "$USERS 1 $USERS" ]] ||
	{ echo "seeding did not give ids 1..$USERS" >&2; exit 1; }

token=
if has kiln || has kiln-warn || has kiln-off || has kiln-otel || has kiln-otel-all; then
	"$BIN/kiln" token create --scope read --db "$kiln_db" >"$LOGDIR/token.out" 2>"$LOGDIR/token.err" ||
		{ echo "kiln token create failed; see $LOGDIR/token.err" >&2; exit 1; }
	token=$(tail -n1 "$LOGDIR/token.out")
fi

# Machine and versions, once.
jq -nc --arg cpu "$(cpu_model)" \
	--argjson nproc "$(nproc)" --arg kernel "$(uname -r)" \
	--arg go "$(go version | cut -d' ' -f3)" --arg node "$(node --version 2>/dev/null || echo none)" \
	--arg wrk "$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)" \
	--arg pg "$(psql "$DB" -qXAt -c 'SHOW server_version')" --arg kiln "$(git -C "$repo" rev-parse --short HEAD)" \
	--arg schema "$schema" --argjson users "$USERS" \
	'{machine: {cpu: $cpu, nproc: $nproc, kernel: $kernel}, versions: {go: $go, node: $node, wrk: $wrk, postgres: $pg, kiln_commit: $kiln}, schema: $schema, users: $users}' |
	tee -a "$OUT"

# start SYSTEM PORT LOG: starts a server in the background, sets pid,
# log_level and cmd.
start() {
	local addr=127.0.0.1:$2
	log_level=
	case $1 in
	kiln | kiln-warn)
		log_level=info
		[[ $1 == kiln-warn ]] && log_level=warn
		# The admin listener stays on (as by default), on a port of its own.
		cmd=("$BIN/kiln" serve --db "$kiln_db" --addr "$addr" --admin-addr "127.0.0.1:$(($2 + 1000))" --log-level "$log_level")
		;;
	kiln-off)
		log_level=info
		cmd=("$BIN/kiln" serve --db "$kiln_db" --addr "$addr" --admin-addr off --log-level info
			--metrics=false --runtime-monitor=false --slow-request 0 --slow-job 0)
		;;
	kiln-otel | kiln-otel-all)
		log_level=info
		local ratio=${OTEL_SAMPLE:-0.1}
		[[ $1 == kiln-otel-all ]] && ratio=1
		cmd=(env OTEL_EXPORTER_OTLP_ENDPOINT="http://$SINK" OTEL_TRACES_SAMPLER=parentbased_traceidratio
			OTEL_TRACES_SAMPLER_ARG="$ratio" OTEL_SDK_DISABLED=false
			"$BIN/kiln" serve --db "$kiln_db" --addr "$addr" --admin-addr "127.0.0.1:$(($2 + 1000))" --log-level info)
		;;
	bare) cmd=("$BIN/bareusers" --db "$DB" --schema "$schema" --addr "$addr") ;;
	express) cmd=(node "$compare/node/express-users/server.mjs" --db "$DB" --schema "$schema" --port "$2" --workers 2) ;;
	esac
	"${cmd[@]}" >"$3" 2>&1 &
	pid=$!
	pids+=("$pid")
}

# wait_ready URL PID: until GET user 1 answers 200 with user 1's JSON.
wait_ready() {
	local deadline=$((SECONDS + 60)) body
	while ((SECONDS < deadline)); do
		kill -0 "$2" 2>/dev/null || return 1
		if body=$(curl -fsS --max-time 2 -H "Authorization: Bearer $token" "$1/api/v1/users/1" 2>/dev/null) &&
			jq -e '.id == 1 and .email == "user1@example.com" and has("name") and has("created_at") and has("updated_at")' <<<"$body" >/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# The OTLP sink for the tracing systems runs for the whole script.
SINK=127.0.0.1:$((PORT_BASE + 999))
if has kiln-otel || has kiln-otel-all; then
	"$BIN/otlpsink" --addr "$SINK" >"$LOGDIR/otlpsink.log" 2>&1 &
	pids+=("$!")
fi

lua=$here/random.lua
for round in $(seq 1 "$ROUNDS"); do
	port=$PORT_BASE
	for sys in "${systems[@]}"; do
		port=$((port + 1))
		url=http://127.0.0.1:$port
		base=$LOGDIR/r$round-$sys
		wait_for_quiet
		start "$sys" "$port" "$base.server.log"
		if ! wait_ready "$url" "$pid"; then
			echo "round $round $sys: server did not answer GET /api/v1/users/1 correctly; see $base.server.log" >&2
			stop_server "$pid"
			jq -nc --argjson round "$round" --arg sys "$sys" --arg log "$base.server.log" \
				'{round: $round, system: $sys, error: "server not ready", log: $log}' | tee -a "$OUT"
			continue
		fi
		USERS_TOKEN=$token USERS_N=$USERS wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$lua" "$url" >"$base.warmup.txt" 2>&1
		load_before=$(load1)
		wrk_cmd="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -s $lua $url -- $USERS"
		echo "round $round $sys (load $load_before): $wrk_cmd" >&2
		cpu0=$(cpu_ticks "$pid")
		USERS_TOKEN=$token wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$lua" "$url" -- "$USERS" >"$base.wrk.txt" 2>&1
		cpu1=$(cpu_ticks "$pid")
		rss=$(peak_rss_kib "$pid")
		nproc_server=$(descendants "$pid" | wc -l)
		load_after=$(load1)
		stop_server "$pid"
		res=$(sed -n 's/^WRK_JSON //p' "$base.wrk.txt")
		[[ -n $res ]] || { echo "no WRK_JSON line in $base.wrk.txt" >&2; exit 1; }
		jq -c --argjson round "$round" --arg sys "$sys" --arg lvl "$log_level" --arg cmd "${cmd[*]}" \
			--arg wrk "$wrk_cmd" --argjson rss "$rss" --argjson procs "$nproc_server" \
			--argjson lb "$load_before" --argjson la "$load_after" \
			--argjson cpu "$((cpu1 - cpu0))" --argjson hz "$(getconf CLK_TCK)" \
			'{round: $round, system: $sys, requests_per_s: .requests_per_s,
			  server_cpu_ms_per_1k_requests: ($cpu / $hz * 1000 / .requests * 1000 * 100 | round / 100),
			  p50_ms: (.latency_us.p50 / 1000), p99_ms: (.latency_us.p99 / 1000),
			  peak_rss_mib: (($rss / 1024 * 10 | round) / 10), server_processes: $procs,
			  valid: ([.errors[]] | add == 0)} +
			 (if $lvl != "" then {log_level: $lvl} else {} end) +
			 {load1_before: $lb, load1_after: $la, wrk: ., server_command: $cmd, wrk_command: $wrk}' <<<"$res" |
			tee -a "$OUT"
		jq -e '.errors | [.[]] | add == 0' <<<"$res" >/dev/null ||
			echo "round $round $sys: wrk saw errors or non-2xx answers: $(jq -c .errors <<<"$res")" >&2
	done
done

# Medians over this invocation's runs (the last ROUNDS x systems lines of OUT).
echo >&2
tail -n $((ROUNDS * ${#systems[@]})) "$OUT" | jq -rs '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	def r(n): if . == null then "-" else (. * n | round) / n | tostring end;
	[.[] | select(.requests_per_s != null)] | group_by(.system) |
	map({system: .[0].system, runs: length, invalid: (map(select(.valid | not)) | length),
	     rps: (map(.requests_per_s) | median), p50: (map(.p50_ms) | median),
	     p99: (map(.p99_ms) | median), rss: (map(.peak_rss_mib) | median),
	     cpu: (map(.server_cpu_ms_per_1k_requests) | median)}) as $m |
	($m | map({(.system): .rps}) | add // {}) as $rps |
	(["system", "runs", "req/s", "p50 ms", "p99 ms", "peak RSS MiB", "server CPU ms/1k req"] | @tsv),
	($m[] | [.system, (.runs | tostring) + (if .invalid > 0 then " (\(.invalid) with errors)" else "" end),
	         (.rps | r(1)), (.p50 | r(100)), (.p99 | r(100)), (.rss | r(10)), (.cpu | r(10))] | @tsv),
	(["kiln", "kiln-warn"][] as $k | ["bare", "express"][] as $o |
	 select($rps[$k] != null and $rps[$o] != null) |
	 "\($k)/\($o) req/s: \($rps[$k] / $rps[$o] | r(1000))")' | column -t -s $'\t'
