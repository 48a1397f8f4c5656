#!/usr/bin/env bash
# What observability costs the job engine: kiln bench in throughput mode,
# ROUNDS rounds of three settings, interleaved (the order rotates from
# round to round, so that none always runs first):
#
#   off      kiln bench
#   on       kiln bench --telemetry (metrics fed by every job event and
#            scraped every 15s, the runtime monitor, the slow-job log)
#   otel     kiln bench --telemetry with tracing on, sampling SAMPLE of
#            traces (parentbased_traceidratio), exported over OTLP/HTTP to
#            cmd/otlpsink, a receiver that counts spans and keeps nothing
#
# Each run's worked jobs/s, insert jobs/s and peak RSS come from kiln
# bench's JSON; its CPU time (user + system) from the shell. One JSON line
# per run goes to stdout and OUT, then a table of medians with each
# setting's ratio to off.
#
# Usage: run-telemetry.sh [--rounds 7] [--jobs 50000] [--workers 100]
#          [--sample 0.1] [--pause 5] [--out FILE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
compare=$(cd "$here/.." && pwd)
repo=$(cd "$compare/../.." && pwd)
. "$compare/lib.sh"

ROUNDS=${ROUNDS:-7}
JOBS=${JOBS:-50000}
WORKERS=${WORKERS:-100}
SAMPLE=${SAMPLE:-0.1}
PAUSE=${PAUSE:-5} # seconds between runs
SINK_ADDR=${SINK_ADDR:-127.0.0.1:19999}
BIN=${BIN:-/tmp/kiln-engine-bench}
OUT=${OUT:-}


while (($#)); do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--jobs) JOBS=$2; shift 2 ;;
	--workers) WORKERS=$2; shift 2 ;;
	--sample) SAMPLE=$2; shift 2 ;;
	--pause) PAUSE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

require curl jq go

mkdir -p "$BIN"
OUT=${OUT:-$BIN/runs-$(date +%Y%m%dT%H%M%S).jsonl}
echo "runs appended to $OUT" >&2
(cd "$repo" && go build -o "$BIN/kiln" ./cmd/kiln)
(cd "$compare" && go build -o "$BIN/otlpsink" ./cmd/otlpsink)

"$BIN/otlpsink" -addr "$SINK_ADDR" >"$BIN/otlpsink.log" 2>&1 &
sink=$!
stop_sink() { kill "$sink" 2>/dev/null && wait "$sink" 2>/dev/null; cat "$BIN/otlpsink.log" >&2; }
trap stop_sink EXIT
for ((i = 0; ; i++)); do # until the receiver answers
	curl -s -o /dev/null "http://$SINK_ADDR/" && break
	kill -0 "$sink" 2>/dev/null && ((i < 50)) || { echo "otlpsink did not start:" >&2; cat "$BIN/otlpsink.log" >&2; exit 1; }
	sleep 0.1
done
trap 'exit 130' INT TERM

first=$(($( (cat "$OUT" 2>/dev/null || true) | wc -l) + 1)) # this invocation's first line of OUT
jq -nc --arg cpu "$(cpu_model)" --argjson nproc "$(nproc)" \
	--arg go "$(go version | cut -d' ' -f3)" --arg kiln "$(git -C "$repo" rev-parse --short HEAD)" \
	--argjson jobs "$JOBS" --argjson workers "$WORKERS" --arg sample "$SAMPLE" \
	'{machine: {cpu: $cpu, nproc: $nproc}, versions: {go: $go, kiln_commit: $kiln}, jobs: $jobs, workers: $workers, sample: ($sample | tonumber)}' |
	tee -a "$OUT"

# run ROUND SETTING
run() {
	local args=(bench --mode throughput --jobs "$JOBS" --workers "$WORKERS" --json) env=(OTEL_SDK_DISABLED=true)
	case $2 in
	on) args+=(--telemetry) ;;
	otel)
		args+=(--telemetry)
		env=(OTEL_SDK_DISABLED=false OTEL_EXPORTER_OTLP_ENDPOINT="http://$SINK_ADDR"
			OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG="$SAMPLE")
		;;
	esac
	local load out times TIMEFORMAT='%U %S'
	load=$(load1)
	times=$({ time env -u OTEL_EXPORTER_OTLP_ENDPOINT "${env[@]}" "$BIN/kiln" "${args[@]}" >"$BIN/last.out" 2>"$BIN/last.err"; } 2>&1) ||
		{ echo "kiln bench failed:" >&2; cat "$BIN/last.err" >&2; exit 1; }
	out=$(tail -n1 "$BIN/last.out")
	jq -c --argjson round "$1" --arg setting "$2" --arg times "$times" --arg load "$load" --argjson jobs "$JOBS" '
		($times | split(" ") | map(tonumber) | add) as $cpu |
		{round: $round, setting: $setting, work_jobs_per_s, insert_jobs_per_s, peak_rss_mb,
		 cpu_s: ($cpu * 100 | round / 100), cpu_us_per_job: ($cpu / $jobs * 1e6 * 10 | round / 10), load: ($load | tonumber)}' <<<"$out" |
		tee -a "$OUT"
}

settings=(off on otel)
for ((r = 1; r <= ROUNDS; r++)); do
	for ((k = 0; k < 3; k++)); do
		run "$r" "${settings[$(((r + k) % 3))]}"
		sleep "$PAUSE"
	done
done

echo
tail -n +"$first" "$OUT" | jq -rs '
	def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	[.[] | select(.setting)] | group_by(.setting) |
	map({setting: .[0].setting, runs: length, w: (map(.work_jobs_per_s) | median), cpu: (map(.cpu_us_per_job) | median)}) as $m |
	($m[] | select(.setting == "off")) as $off |
	"setting  runs  worked jobs/s (median)  vs off  CPU us/job (median)  vs off",
	($m | sort_by({off: 0, on: 1, otel: 2}[.setting])[] |
	 "\(.setting)\t\(.runs)\t\(.w | round)\t\(.w / $off.w * 1000 | round / 1000)\t\(.cpu)\t\(.cpu / $off.cpu * 1000 | round / 1000)")'
