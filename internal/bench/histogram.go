package bench

import (
	"math"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram counts latencies in nanoseconds in an HDR histogram (HdrHistogram's Go port) with 2
// significant digits: values below 256 ns exactly, then 128 linear sub-buckets per power of two,
// so a recorded value is known to within 1/128 (0.8 %) of itself from 1 ns to an hour. Its
// counts are one fixed array (about 38 KB, allocated at the first Record), so Record never
// allocates and costs a few nanoseconds; histograms merge by adding counts. Beside it the
// exact count, sum, minimum and maximum are kept, for the mean and to clamp percentiles. Two
// digits and not three: a run holds one histogram per subscriber, and three would be 272 KB
// each (a thousand subscribers, 272 MB) for precision no run-to-run figure has.
type Histogram struct {
	h     *hdr.Histogram // nil until the first value
	total uint64
	sum   float64
	min   uint64
	max   uint64
}

const (
	histDigits = 2
	// histHighest is the largest value told apart; larger ones are counted as it (the exact
	// maximum is kept beside).
	histHighest = int64(time.Hour)
	// histRelErr is the relative error of a percentile with 2 digits: 1/128.
	histRelErr = 1.0 / 128
)

func newHDR() *hdr.Histogram { return hdr.New(1, histHighest, histDigits) }

// Record adds one value.
func (h *Histogram) Record(v uint64) {
	if h.h == nil {
		h.h = newHDR()
	}
	_ = h.h.RecordValue(int64(min(v, uint64(histHighest)))) // in range: cannot fail
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += float64(v)
}

// Merge adds o's counts into h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	if h.h == nil {
		h.h = newHDR()
	}
	h.h.Merge(o.h)
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Min and Max are exact.
func (h *Histogram) Min() uint64 { return h.min }
func (h *Histogram) Max() uint64 { return h.max }

// Mean is exact.
func (h *Histogram) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// Percentile returns the value at quantile q (0 < q <= 1) by the nearest-rank definition: the
// smallest recorded value v such that at least q of all values are <= v. The answer is the upper
// end of v's bucket, capped by the exact maximum, so it is never below the true value and at
// most 1/128 of it above.
func (h *Histogram) Percentile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	// The library rounds its rank (percentile/100 × count + 0.5, truncated); asking for exactly
	// rank/count makes that rank, whatever the float error, and keeps the nearest-rank meaning
	// (rounding would put p90 of 7 values at the 6th).
	v := uint64(h.h.ValueAtPercentile(100 * float64(rank) / float64(h.total)))
	return min(max(v, h.min), h.max)
}

// countAtOrAbove is how many recorded values lie in buckets that start at v or above: at most
// the true count of values >= v, short only by those in the bucket holding v.
func (h *Histogram) countAtOrAbove(v uint64) uint64 {
	if h.h == nil {
		return 0
	}
	var n int64
	for _, b := range h.h.Distribution() {
		if b.From >= int64(v) {
			n += b.Count
		}
	}
	return uint64(n)
}
