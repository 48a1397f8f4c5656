#!/usr/bin/env bash
# Benchmarks kiln's image.thumbnail kind on embedded SQLite, with a 12 MP
# JPEG (cmd/photo, 4000x3000) made into the default three sizes:
#
#   throughput  N uploads, worked by W workers for each W in WORKERS
#               (serve --queues images=W): images/s of wall time (first
#               start to last finish, from the jobs' own timestamps),
#               images per CPU-second of the kiln process, and its peak
#               RSS (VmHWM).
#   api         GET /api/v1/users/{id} (random ids among USERS) at a fixed
#               RATE for DURATION with vegeta, idle and then, for each W in
#               BUSY_WORKERS (default 1, GOMAXPROCS and 2 x GOMAXPROCS),
#               with BUSY thumbnail jobs waiting on an images queue of W
#               workers; the latency p50/p99/max. A busy run is valid only
#               if thumbnails were still waiting when the load ended, so
#               that they ran for all of it. For each W in ISOLATED_WORKERS
#               (default none) and each P in ISOLATE_PRIORITIES (default
#               idle), the same with serve --isolate-queues images
#               --isolate-priority P: the thumbnails run in a kiln worker
#               process that serve starts at that priority.
#
# ROUNDS rounds, the settings interleaved in each; one JSON line per run
# goes to stdout and OUT, then a table of medians. Every run gets a fresh
# copy of a seeded data directory under WORK, which is deleted on exit.
#
# Usage: run-thumbs.sh [--parts throughput,api] [--rounds 3] [--images 32]
#          [--workers 1,8] [--rate 500] [--duration 10s] [--busy 80]
#          [--busy-workers 1,2,4] [--isolated-workers 4]
#          [--isolate-priorities idle,10]
#          [--out FILE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
compare=$(cd "$here/.." && pwd)
repo=$(cd "$compare/../.." && pwd)
. "$compare/lib.sh"

PARTS=${PARTS:-throughput,api}
ROUNDS=${ROUNDS:-3}
IMAGES=${IMAGES:-32}
WORKERS=${WORKERS:-1,8}
RATE=${RATE:-500}
DURATION=${DURATION:-10s}
BUSY=${BUSY:-80}
BUSY_WORKERS=${BUSY_WORKERS:-}
ISOLATED_WORKERS=${ISOLATED_WORKERS:-}
ISOLATE_PRIORITIES=${ISOLATE_PRIORITIES:-idle}
USERS=${USERS:-1000}
BIN=${BIN:-/tmp/kiln-thumbs-bench}
OUT=${OUT:-}
PORT=${PORT:-18291}
MAX_LOAD=${MAX_LOAD:-1.0} # wait before a run while the 1-minute load is above this
MAX_WAIT=${MAX_WAIT:-120} # ... but at most this many seconds


while (($#)); do
	case $1 in
	--parts) PARTS=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--images) IMAGES=$2; shift 2 ;;
	--workers) WORKERS=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--busy) BUSY=$2; shift 2 ;;
	--busy-workers) BUSY_WORKERS=$2; shift 2 ;;
	--isolated-workers) ISOLATED_WORKERS=$2; shift 2 ;;
	--isolate-priorities) ISOLATE_PRIORITIES=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

require curl jq go

mkdir -p "$BIN"
WORK=$(mktemp -d "$BIN/run-XXXXXX")
OUT=${OUT:-$WORK/../runs-$(date +%Y%m%dT%H%M%S).jsonl}
echo "work in $WORK, runs appended to $OUT" >&2

(cd "$repo" && go build -o "$BIN/kiln" ./cmd/kiln)
(cd "$compare" && go build -o "$BIN/photo" ./cmd/photo && go build -o "$BIN/vegeta" github.com/tsenart/vegeta/v12)
photo=$BIN/photo-12mp.jpg
[[ -s $photo ]] || "$BIN/photo" -o "$photo"

pid=
cleanup() {
	[[ -n $pid ]] && stop_server
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

URL=http://127.0.0.1:$PORT
api() { # METHOD PATH [curl args...]
	local m=$1 p=$2
	shift 2
	curl -fsS --max-time 60 -X "$m" -H "Authorization: Bearer $token" "$@" "$URL/api/v1$p"
}

# start_server DATA_DIR QUEUES [ARGS...]: serve in the background; sets pid.
start_server() {
	"$BIN/kiln" serve --data-dir "$1" --addr "127.0.0.1:$PORT" --admin-addr off --log-level warn \
		--queues "$2" "${@:3}" >"$1/serve.log" 2>&1 &
	pid=$!
	local deadline=$((SECONDS + 60))
	until curl -fsS --max-time 2 "$URL/readyz" >/dev/null 2>&1; do
		kill -0 "$pid" 2>/dev/null || { echo "serve exited; see $1/serve.log" >&2; cat "$1/serve.log" >&2; exit 1; }
		((SECONDS < deadline)) || { echo "serve not ready after 60s" >&2; exit 1; }
		sleep 0.1
	done
}

stop_server() {
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
}


# upload N: N uploads of the photo, the images queue paused.
upload() {
	local i
	for ((i = 0; i < $1; i++)); do
		api POST /images -F "file=@$photo;type=image/jpeg" >/dev/null
	done
}

# images_counts prints the images queue's counts as JSON.
images_counts() { api GET /queues | jq -c '[.queues[] | select(.name == "images") | .counts][0] // {}'; }

# A seeded data directory: migrated, a token, USERS users.
seed=$WORK/seed
mkdir -p "$seed"
"$BIN/kiln" migrate --data-dir "$seed" >/dev/null 2>&1
token=$("$BIN/kiln" token create --scope admin --data-dir "$seed" 2>/dev/null | tail -n1)
start_server "$seed" default=10
seq 1 "$USERS" | xargs -P 8 -I{} curl -fsS -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
	-d '{"email":"user{}@example.com","name":"User {}"}' "$URL/api/v1/users"
stop_server
procs=$(nproc)

first=$(($( (cat "$OUT" 2>/dev/null || true) | wc -l) + 1)) # this invocation's first line of OUT
jq -nc --arg cpu "$(cpu_model)" --argjson nproc "$procs" \
	--arg go "$(go version | cut -d' ' -f3)" --arg kiln "$(git -C "$repo" rev-parse --short HEAD)" \
	--argjson photo_bytes "$(stat -c %s "$photo")" \
	'{machine: {cpu: $cpu, nproc: $nproc}, versions: {go: $go, kiln_commit: $kiln}, photo: {width: 4000, height: 3000, bytes: $photo_bytes}}' |
	tee -a "$OUT"

# throughput_run ROUND W
throughput_run() {
	local dir=$WORK/t-$1-$2
	cp -r "$seed" "$dir"
	rm -f "$dir"/serve.log
	start_server "$dir" "default=10,images=$2"
	api POST /queues/images/pause >/dev/null
	upload "$IMAGES"
	wait_for_quiet
	local c0 c1 counts deadline=$((SECONDS + 600))
	c0=$(cpu_ticks "$pid")
	api POST /queues/images/resume >/dev/null
	while :; do
		counts=$(images_counts)
		[[ $(jq '(.completed // 0) + (.failed // 0) + (.cancelled // 0)' <<<"$counts") -ge $IMAGES ]] && break
		((SECONDS < deadline)) || { echo "thumbnails not done after 600s: $counts" >&2; exit 1; }
		sleep 0.2
	done
	c1=$(cpu_ticks "$pid")
	local rss jobs
	rss=$(peak_rss_kib "$pid")
	jobs=$(api GET "/jobs?kind=image.thumbnail&limit=$IMAGES")
	stop_server
	rm -rf "$dir"
	jq -c --argjson round "$1" --argjson w "$2" --argjson n "$IMAGES" --argjson cpu "$(((c1 - c0)))" \
		--argjson hz "$(getconf CLK_TCK)" --argjson rss "$rss" --argjson counts "$counts" '
		def ts: sub("\\.[0-9]+"; "") | fromdateiso8601;
		def secs: (.[0:19] + "Z" | fromdateiso8601) + ((.[19:] | capture("^\\.(?<f>[0-9]+)") | ("0." + .f | tonumber)) // 0);
		[.jobs[] | select(.state == "completed")] as $done |
		(($done | map(.finalized_at | secs) | max) - ($done | map(.attempted_at | secs) | min)) as $wall |
		{part: "throughput", round: $round, workers: $w, images: $n, completed: ($done | length),
		 wall_s: ($wall * 1000 | round / 1000), images_per_s: ($n / $wall * 100 | round / 100),
		 cpu_s: ($cpu / $hz), images_per_cpu_s: ($n / ($cpu / $hz) * 100 | round / 100),
		 peak_rss_mib: ($rss / 1024 * 10 | round / 10), counts: $counts,
		 valid: (($done | length) == $n)}' <<<"$jobs" | tee -a "$OUT"
}

# api_run ROUND W [PRIORITY]: W images workers with BUSY jobs waiting, or
# none when W is 0 (idle); with PRIORITY, in serve's isolated worker at
# that priority.
api_run() {
	local dir=$WORK/a-$1-$2-${3:-} queues="default=10,images=$(($2 > 0 ? $2 : 1)),media=1,webhooks=20" n=0 setting=idle extra=()
	if (($2 > 0)); then
		n=$BUSY
		setting="busy, images=$2"
	fi
	if [[ -n ${3:-} ]]; then
		setting="busy, images=$2 isolated at $3"
		extra=(--isolate-queues images --isolate-priority "$3")
	fi
	cp -r "$seed" "$dir"
	rm -f "$dir"/serve.log
	start_server "$dir" "$queues" "${extra[@]}"
	api POST /queues/images/pause >/dev/null
	upload "$n"
	local targets=$dir/targets.txt i
	for ((i = 0; i < 20000; i++)); do
		printf 'GET %s/api/v1/users/%d\nAuthorization: Bearer %s\n\n' "$URL" $((RANDOM % USERS + 1)) "$token"
	done >"$targets"
	wait_for_quiet
	api POST /queues/images/resume >/dev/null
	# Let the thumbnails get going, and warm the API up.
	"$BIN/vegeta" attack -rate="$RATE" -duration=2s -targets="$targets" >/dev/null
	local load_before before after report
	load_before=$(load1)
	before=$(images_counts)
	report=$("$BIN/vegeta" attack -rate="$RATE" -duration="$DURATION" -targets="$targets" | "$BIN/vegeta" report -type=json)
	after=$(images_counts)
	local rss
	rss=$(peak_rss_kib "$pid")
	stop_server
	rm -rf "$dir"
	jq -c --argjson round "$1" --arg s "$setting" --arg q "$queues" --argjson rate "$RATE" --argjson before "$before" \
		--argjson after "$after" --argjson lb "$load_before" --argjson rss "$rss" '
		{part: "api", round: $round, setting: $s, queues: $q, rate: $rate,
		 p50_ms: (.latencies["50th"] / 1e6 * 100 | round / 100), p99_ms: (.latencies["99th"] / 1e6 * 100 | round / 100),
		 max_ms: (.latencies.max / 1e6 * 100 | round / 100), success: .success, status_codes: .status_codes,
		 thumbnails_done_during: (($after.completed // 0) - ($before.completed // 0)),
		 thumbnails_running_after: ($after.running // 0), thumbnails_waiting_after: ($after.available // 0),
		 peak_rss_mib: ($rss / 1024 * 10 | round / 10), load1_before: $lb,
		 valid: (.success == 1 and ($s == "idle" or ($after.available // 0) > 0))}' <<<"$report" | tee -a "$OUT"
}

IFS=, read -r -a ws <<<"$WORKERS"
IFS=, read -r -a bws <<<"${BUSY_WORKERS:-1,$procs,$((2 * procs))}"
IFS=, read -r -a iws <<<"$ISOLATED_WORKERS"
IFS=, read -r -a ips <<<"$ISOLATE_PRIORITIES"
for round in $(seq 1 "$ROUNDS"); do
	if [[ ",$PARTS," == *,throughput,* ]]; then
		for w in "${ws[@]}"; do throughput_run "$round" "$w"; done
	fi
	if [[ ",$PARTS," == *,api,* ]]; then
		for w in 0 "${bws[@]}"; do api_run "$round" "$w"; done
		for w in "${iws[@]}"; do
			for p in "${ips[@]}"; do api_run "$round" "$w" "$p"; done
		done
	fi
done

echo >&2
tail -n +"$first" "$OUT" | jq -rs '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	([.[] | select(.part == "throughput")] | group_by(.workers)[] |
	 "throughput workers=\(.[0].workers): \(length) runs (\(map(select(.valid | not)) | length) invalid), images/s \(map(.images_per_s) | median), images/CPU-s \(map(.images_per_cpu_s) | median), peak RSS MiB \(map(.peak_rss_mib) | median)"),
	([.[] | select(.part == "api")] | group_by(.setting)[] |
	 "api \(.[0].setting) (\(.[0].queues)): \(length) runs (\(map(select(.valid | not)) | length) invalid), p50 \(map(.p50_ms) | median) ms, p99 \(map(.p99_ms) | median) ms, max \(map(.max_ms) | median) ms, thumbnails during \(map(.thumbnails_done_during) | median)")' >&2
