# Helpers shared by the benchmark scripts; source it from bash.

# descendants PID prints PID and all its descendants.
descendants() {
	local c
	echo "$1"
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do descendants "$c"; done
}

# cpu_ticks PID sums user and system CPU time (in clock ticks) over PID
# and its descendants.
cpu_ticks() {
	local sum=0 p v
	for p in $(descendants "$1"); do
		v=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || true)
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

# peak_rss_kib PID sums VmHWM over PID and its descendants.
peak_rss_kib() {
	local sum=0 p v
	for p in $(descendants "$1"); do
		v=$(awk '/^VmHWM:/{print $2}' /proc/"$p"/status 2>/dev/null || true)
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

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
