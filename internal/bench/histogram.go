package bench

import (
	"math"
	"math/bits"
)

// Histogram counts values (latencies in nanoseconds) in fixed log-linear buckets: values below
// 128 exactly, then 64 equal buckets per power of two, so a bucket is at most 1/64 (1.6 %) of
// its values wide. It has a fixed size, so Record never allocates, and histograms merge by
// adding counts.
type Histogram struct {
	counts [histBuckets]uint64
	total  uint64
	sum    float64
	min    uint64
	max    uint64
}

const (
	histLinear  = 128 // values below this have a bucket each
	histSubBits = 6   // 64 buckets per power of two above that
	histSub     = 1 << histSubBits
	histMaxBits = 42 // values up to 2^42 ns (73 minutes); larger ones land in the last bucket
	histBuckets = histLinear + (histMaxBits-histSubBits-1)*histSub
)

// bucketOf returns the bucket index of v.
func bucketOf(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - histSubBits // v>>shift is in [64, 128)
	i := histLinear + (shift-1)*histSub + int(v>>uint(shift)) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketRange returns the smallest and largest value that fall in bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < histLinear {
		return uint64(i), uint64(i)
	}
	j := i - histLinear
	shift := uint(j/histSub + 1)
	m := uint64(j%histSub + histSub)
	return m << shift, (m+1)<<shift - 1
}

// Record adds one value.
func (h *Histogram) Record(v uint64) {
	h.counts[bucketOf(v)]++
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
	for i, c := range o.counts {
		h.counts[i] += c
	}
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
// most 1/64 above it.
func (h *Histogram) Percentile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	if rank > h.total {
		rank = h.total
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketRange(i)
			return min(max(hi, h.min), h.max)
		}
	}
	return h.max
}
