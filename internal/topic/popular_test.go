package topic

import (
	"runtime"
	"testing"
)

// A connect storm onto one filter (every device subscribing to its fleet's broadcast topic)
// must cost each subscriber about the same, not a copy of everyone who came before: Subscribe
// once rebuilt a big set's view to find the filter's text, which made the storm quadratic (at
// 18,000 subscribers, 5 GB of copies and 4 KiB more resident memory per connection).
func TestSubscribePopularFilterIsLinear(t *testing.T) {
	const before, measured = 2000, 2000
	x := NewIndex[int, int](64)
	f, err := ParseFilter("fleet/broadcast")
	if err != nil {
		t.Fatal(err)
	}
	for k := range before {
		x.Subscribe(f, k, 0)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for k := before; k < before+measured; k++ {
		x.Subscribe(f, k, 0)
	}
	runtime.ReadMemStats(&m1)
	// A copy of the set is 32 bytes per entry here, so the quadratic way allocates about
	// 3,000 × 32 = 96,000 bytes per subscribe; growing the list and its index map by doubling
	// costs well under 1 KiB per subscribe on average.
	perSub := (m1.TotalAlloc - m0.TotalAlloc) / measured
	if perSub > 1024 {
		t.Fatalf("subscribing to a filter with %d subscribers allocated %d bytes per subscribe: the set is copied on each", before, perSub)
	}
	// The set is still whole and readable.
	r := x.Match("fleet/broadcast")
	if got := len(r.Entries); got != before+measured {
		t.Fatalf("Match found %d subscribers, want %d", got, before+measured)
	}
	// A new subscriber after a reader rebuilt the view is seen by the next reader.
	x.Subscribe(f, -1, 0)
	if got := len(x.Match("fleet/broadcast").Entries); got != before+measured+1 {
		t.Fatalf("after one more subscribe Match found %d subscribers, want %d", got, before+measured+1)
	}
}
