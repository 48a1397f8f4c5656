# Helpers shared by the benchmark scripts; source it from bash.

# usage prints the calling script's header comment, from its second line
# to the line before "set -euo".
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# require TOOL...: exits unless every TOOL is on the PATH.
require() {
	local c
	for c in "$@"; do command -v "$c" >/dev/null || { echo "$c not found" >&2; exit 1; }; done
}

# cpu_model prints the CPU's model name.
cpu_model() { awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo; }

# descendants PID prints PID and all its descendants.
descendants() {
	local c
	echo "$1"
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do descendants "$c"; done
}

# sum_over_tree PID FILE AWK sums what the awk program AWK prints from
# /proc/<p>/FILE over PID and its descendants.
sum_over_tree() {
	local sum=0 p v
	for p in $(descendants "$1"); do
		v=$(awk "$3" /proc/"$p"/"$2" 2>/dev/null || true)
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

# cpu_ticks PID: user and system CPU time, in clock ticks, of PID and its
# descendants.
cpu_ticks() { sum_over_tree "$1" stat '{print $14 + $15}'; }

# peak_rss_kib PID: VmHWM of PID and its descendants, summed.
peak_rss_kib() { sum_over_tree "$1" status '/^VmHWM:/{print $2}'; }

load1() { cut -d' ' -f1 /proc/loadavg; }

# wait_for_quiet waits while the 1-minute load is above MAX_LOAD, for at
# most MAX_WAIT seconds.
wait_for_quiet() {
	local waited=0
	while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN{exit !(l>m)}'; do
		if ((waited >= MAX_WAIT)); then
			echo "load still $(load1) after ${MAX_WAIT}s; running anyway" >&2
			return
		fi
		((waited == 0)) && echo "load $(load1) > $MAX_LOAD: waiting" >&2
		sleep 5
		waited=$((waited + 5))
	done
}
