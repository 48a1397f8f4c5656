#!/usr/bin/env bash
# Runs kiln, asynq, River and BullMQ benches interleaved, ROUNDS times,
# appending one JSON line per run to OUT; then prints the medians
# (cmd/summarize).
#
# Needs Redis at 127.0.0.1:6379 (database 15 is flushed before each asynq
# run, database 14 before each BullMQ run), PostgreSQL at $DATABASE_URL and,
# for the bullmq config, Node.js 20+ with npm. Environment knobs and defaults
# below.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
JOBS=${JOBS:-50000}
WORKERS=${WORKERS:-100}
RATE=${RATE:-200}
DURATION=${DURATION:-10s}
MAX_LOAD=${MAX_LOAD:-1.5}      # wait before a run while the 1-minute load is above this
MAX_WAIT=${MAX_WAIT:-300}      # ... but at most this many seconds, then run anyway
OUT=${OUT:-results.jsonl}
BIN=${BIN:-/tmp/kiln-compare-bin}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
# Space-separated configurations to run; see the case statement below.
CONFIGS=${CONFIGS:-"kiln asynq river-pgx river-pgx-tuned river-sqlite river-sqlite-tuned"}
MODES=${MODES:-"throughput latency"}

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$BIN"
(cd "$here/../.." && go build -o "$BIN/kiln" ./cmd/kiln)
(cd "$here" && go build -o "$BIN/" ./cmd/asynq-bench ./cmd/river-bench ./cmd/summarize)
case " $CONFIGS " in
*" bullmq "*) (cd "$here/node" && npm ci --no-audit --no-fund >&2) ;;
esac

load1() { cut -d' ' -f1 /proc/loadavg; }

wait_for_quiet() {
	local waited=0
	awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN{exit !(l>m)}' && echo "load $(load1) > $MAX_LOAD: waiting" >&2
	while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN{exit !(l>m)}'; do
		if ((waited >= MAX_WAIT)); then
			echo "load still $(load1) after ${MAX_WAIT}s; running anyway" >&2
			return
		fi
		sleep 10
		waited=$((waited + 10))
	done
}

command_for() { # config mode
	local common=(--mode "$2" --jobs "$JOBS" --workers "$WORKERS" --rate "$RATE" --duration "$DURATION" --json)
	case $1 in
	kiln) echo "$BIN/kiln bench ${common[*]}" ;;
	asynq) echo "$BIN/asynq-bench ${common[*]}" ;;
	asynq-tuned) echo "$BIN/asynq-bench --task-check-interval 10ms ${common[*]}" ;;
	river-pgx) echo "$BIN/river-bench --driver pgx --database-url $DATABASE_URL ${common[*]}" ;;
	river-pgx-tuned) echo "$BIN/river-bench --driver pgx --database-url $DATABASE_URL --tuned ${common[*]}" ;;
	river-sqlite) echo "$BIN/river-bench --driver sqlite ${common[*]}" ;;
	river-sqlite-tuned) echo "$BIN/river-bench --driver sqlite --tuned ${common[*]}" ;;
	bullmq) echo "node $here/node/bullmq-bench.mjs ${common[*]}" ;;
	*) echo "unknown config $1" >&2; return 1 ;;
	esac
}

for round in $(seq 1 "$ROUNDS"); do
	for mode in $MODES; do
		for cfg in $CONFIGS; do
			wait_for_quiet
			load=$(load1)
			cmd=$(command_for "$cfg" "$mode")
			echo "round $round load $load: $cmd" >&2
			if out=$(timeout 900 $cmd 2>/tmp/kiln-compare-stderr); then
				echo "$out" | tail -n1 | jq -c --arg lbl "$cfg" --arg mode "$mode" --argjson round "$round" \
					--argjson load "$load" --argjson after "$(load1)" --arg cmd "$cmd" \
					'{round: $round, "label": $lbl, mode: $mode, load1_before: $load, load1_after: $after, command: $cmd, result: .}' >>"$OUT"
			else
				jq -nc --arg lbl "$cfg" --arg mode "$mode" --argjson round "$round" --argjson load "$load" \
					--arg cmd "$cmd" --arg err "$(tail -n3 /tmp/kiln-compare-stderr)" \
					'{round: $round, "label": $lbl, mode: $mode, load1_before: $load, command: $cmd, error: $err}' >>"$OUT"
				echo "FAILED: $cmd" >&2
			fi
			tail -n1 "$OUT" >&2
		done
	done
done
"$BIN/summarize" "$OUT"
