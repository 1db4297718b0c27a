package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramPrecisionAcrossTheRange(t *testing.T) {
	// From 1 ns to an hour, every percentile is within 1/128 of the true value, never below.
	rng := rand.New(rand.NewPCG(5, 6))
	for lo := 1.0; 10*lo <= float64(histHighest); lo *= 10 {
		var h Histogram
		vals := make([]uint64, 2000)
		for i := range vals {
			vals[i] = uint64(lo * (1 + 9*rng.Float64()))
			h.Record(vals[i])
		}
		slices.Sort(vals)
		for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
			got, want := h.Percentile(q), reference(vals, q)
			if got < want || float64(got-want) > float64(want)*histRelErr {
				t.Errorf("values from %g: q=%g got %d, reference %d", lo, q, got, want)
			}
		}
	}
	// Beyond the range the exact maximum still holds.
	var h Histogram
	h.Record(uint64(3 * histHighest))
	if h.Max() != uint64(3*histHighest) || h.Percentile(1) != uint64(3*histHighest) {
		t.Fatalf("a value beyond the range: max %d, p100 %d", h.Max(), h.Percentile(1))
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
				// Never below the true value, at most 1/128 above it.
				if got < want || float64(got-want) > float64(want)*histRelErr {
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
	if !m.h.Equals(all.h) || m.total != all.total || m.sum != all.sum || m.min != all.min || m.max != all.max {
		t.Fatal("merged histogram differs from one fed every value")
	}
	slices.Sort(vals)
	if got, want := m.Percentile(0.99), reference(vals, 0.99); got < want || float64(got-want) > float64(want)*histRelErr {
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

func TestCountAtOrAbove(t *testing.T) {
	var h Histogram
	for v := uint64(1); v <= 1000; v++ {
		h.Record(v * uint64(time.Millisecond))
	}
	// Values from 200 ms to 1 s: 801, less at most those sharing 200 ms's bucket (0.8 % wide).
	if n := h.countAtOrAbove(uint64(200 * time.Millisecond)); n > 801 || n < 799 {
		t.Fatalf("%d values at or above 200 ms, want 801 (or 2 fewer)", n)
	}
	if n := (&Histogram{}).countAtOrAbove(1); n != 0 {
		t.Fatalf("an empty histogram counts %d", n)
	}
}
