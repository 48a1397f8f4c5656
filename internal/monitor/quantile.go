package monitor

import (
	"math"
	"math/bits"
	"runtime/metrics"
)

// quantiles are figures of one window of a histogram, in the histogram's
// unit; all zero when the window holds no events.
type quantiles struct {
	p50, p99, max float64
	count         uint64
}

// windowQuantiles returns the quantiles of the events cur holds beyond
// prev: the runtime's histograms are cumulative since the process
// started, and the monitor reports each window on its own. A nil prev, or
// one with other buckets, counts everything in cur.
func windowQuantiles(prev, cur *metrics.Float64Histogram) quantiles {
	if cur == nil || len(cur.Counts) == 0 || len(cur.Buckets) != len(cur.Counts)+1 {
		return quantiles{}
	}
	counts := make([]uint64, len(cur.Counts))
	copy(counts, cur.Counts)
	if prev != nil && sameBuckets(prev.Buckets, cur.Buckets) && len(prev.Counts) == len(cur.Counts) {
		for i, c := range prev.Counts {
			// Counts only grow; a smaller one means the histogram was
			// reset, so the current count is the whole window.
			if counts[i] >= c {
				counts[i] -= c
			}
		}
	}
	var total uint64
	for _, c := range counts {
		total = addSat(total, c)
	}
	if total == 0 {
		return quantiles{}
	}
	q := quantiles{
		p50:   bucketValue(cur.Buckets, rankBucket(counts, rank(total, 500))),
		p99:   bucketValue(cur.Buckets, rankBucket(counts, rank(total, 990))),
		count: total,
	}
	for i := len(counts) - 1; i >= 0; i-- {
		if counts[i] > 0 {
			q.max = bucketValue(cur.Buckets, i)
			break
		}
	}
	return q
}

// addSat adds without wrapping around.
func addSat(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

func sameBuckets(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// rank returns the 1-based rank of the permille-th quantile among total
// events: ceil(total*permille/1000), at least 1, computed without
// overflow or rounding.
func rank(total, permille uint64) uint64 {
	hi, lo := bits.Mul64(total, permille)
	lo, carry := bits.Add64(lo, 999, 0)
	hi += carry
	r, _ := bits.Div64(hi, lo, 1000)
	return max(r, 1)
}

// rankBucket returns the index of the bucket holding the event of rank r
// (1-based) in counts.
func rankBucket(counts []uint64, r uint64) int {
	var cum uint64
	for i, c := range counts {
		cum = addSat(cum, c)
		if cum >= r {
			return i
		}
	}
	return len(counts) - 1
}

// bucketValue reports bucket i of a histogram with boundaries b as its
// upper bound, or its lower bound when the upper one is infinite; never
// below zero (latencies and pauses cannot be negative).
func bucketValue(b []float64, i int) float64 {
	v := b[i+1]
	if math.IsInf(v, 1) {
		v = b[i]
	}
	if math.IsInf(v, 0) || math.IsNaN(v) || v < 0 {
		return 0
	}
	return v
}
