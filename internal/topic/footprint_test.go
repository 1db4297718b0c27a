package topic

import (
	"runtime"
	"strconv"
	"testing"
	"unsafe"
)

// TestNodeSize fails when a trie node outgrows the 48-byte allocator size class: every distinct
// filter has its own node, so a field added without thought costs every leaf the next class's
// 16 bytes.
func TestNodeSize(t *testing.T) {
	type n = node[*benchSession, benchOpts]
	t.Logf("node %d B, kidSet %d B", unsafe.Sizeof(n{}), unsafe.Sizeof(kidSet[*benchSession, benchOpts]{}))
	if s := unsafe.Sizeof(n{}); s > 48 {
		t.Errorf("node is %d bytes, past the 48-byte size class", s)
	}
}

// BenchmarkLeafMemory measures the heap the index holds per one-subscriber leaf in the shape
// that dominates a broker of idle devices: devices/<id>, one subscription each, all under one
// parent (so the parent's children are in a kidTable). Filters and keys are made before the
// first measurement and the index shares the filter text (as the broker's does), so only the
// index's own structures are counted. Run with -benchtime=1x.
func BenchmarkLeafMemory(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run("leaves="+strconv.Itoa(n), func(b *testing.B) {
			var perLeaf float64
			for b.Loop() {
				perLeaf = leafBytes(n)
			}
			b.ReportMetric(perLeaf, "B/leaf")
		})
	}
}

// leafBytes builds an index of n leaves devices/<id> with one subscription each and returns the
// heap bytes it holds per leaf.
func leafBytes(n int) float64 {
	fs := make([]Filter, n)
	keys := make([]benchSession, n)
	for i := range fs {
		fs[i], _ = ParseFilter("devices/" + strconv.Itoa(i))
	}
	before := heapAlloc()
	x := NewIndex[*benchSession, benchOpts](0)
	x.ShareText()
	for i := range fs {
		x.Subscribe(fs[i], &keys[i], benchOpts{QoS: 1})
	}
	after := heapAlloc()
	runtime.KeepAlive(x)
	runtime.KeepAlive(fs)
	runtime.KeepAlive(keys)
	return float64(after-before) / float64(n)
}
