package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketsAreContiguous(t *testing.T) {
	var prevHi uint64
	for i := 0; i < histBuckets; i++ {
		lo, hi := bucketRange(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d [%d,%d]: bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if lo >= histLinear && float64(hi-lo+1) > float64(lo)/histSub+1 {
			t.Fatalf("bucket %d [%d,%d] is wider than 1/%d of its values", i, lo, hi, histSub)
		}
		prevHi = hi
	}
	if bucketOf(math.MaxUint64) != histBuckets-1 {
		t.Fatal("huge values must land in the last bucket")
	}
}

// reference is the nearest-rank percentile of a sorted slice.
func reference(sorted []uint64, q float64) uint64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func TestPercentilesMatchSortedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() uint64{
		"uniform-small": func() uint64 { return rng.Uint64N(200) },
		"uniform-wide":  func() uint64 { return rng.Uint64N(50_000_000) },
		"lognormal": func() uint64 {
			return uint64(math.Exp(rng.NormFloat64()*1.5 + 10)) // ~22 µs median, long tail
		},
		"bimodal": func() uint64 {
			if rng.IntN(100) < 97 {
				return 20_000 + rng.Uint64N(5_000)
			}
			return 5_000_000 + rng.Uint64N(1_000_000)
		},
		"constant": func() uint64 { return 123_456 },
	}
	quantiles := []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1}
	for name, gen := range dists {
		for _, n := range []int{1, 7, 1000, 100_000} {
			var h Histogram
			vals := make([]uint64, n)
			var sum float64
			for i := range vals {
				vals[i] = gen()
				sum += float64(vals[i])
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range quantiles {
				got, want := h.Percentile(q), reference(vals, q)
				// Never below the true value, at most one bucket (1/64) above it.
				if got < want || float64(got-want) > float64(want)/histSub {
					t.Errorf("%s n=%d q=%g: got %d, reference %d", name, n, q, got, want)
				}
			}
			if h.Min() != vals[0] || h.Max() != vals[n-1] || h.Count() != uint64(n) {
				t.Errorf("%s n=%d: min/max/count %d/%d/%d, want %d/%d/%d", name, n, h.Min(), h.Max(), h.Count(), vals[0], vals[n-1], n)
			}
			if math.Abs(h.Mean()-sum/float64(n)) > 1e-6*sum/float64(n)+1e-9 {
				t.Errorf("%s n=%d: mean %g, want %g", name, n, h.Mean(), sum/float64(n))
			}
		}
	}
}

func TestHistogramMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var a, b, all Histogram
	var vals []uint64
	for i := 0; i < 50_000; i++ {
		v := rng.Uint64N(10_000_000)
		vals = append(vals, v)
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{})
	if m != all {
		t.Fatal("merged histogram differs from one fed every value")
	}
	slices.Sort(vals)
	if got, want := m.Percentile(0.99), reference(vals, 0.99); got < want || got-want > want/histSub {
		t.Fatalf("merged p99 %d, reference %d", got, want)
	}
}

func TestEmptyHistogram(t *testing.T) {
	var h Histogram
	if h.Percentile(0.5) != 0 || h.Mean() != 0 || h.Max() != 0 {
		t.Fatal("an empty histogram reports zeros")
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := new(Histogram)
	v := uint64(1)
	if n := testing.AllocsPerRun(1000, func() { h.Record(v); v = v*7 + 13 }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}
