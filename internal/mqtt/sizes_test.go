package mqtt

import (
	"testing"
	"unsafe"
)

// TestSizes logs the size of the structures every connection holds, for the figures in
// docs/decisions.md ("An idle connection's bytes, second pass"); it checks nothing.
func TestSizes(t *testing.T) {
	t.Logf("conn %d B, packetReader %d B", unsafe.Sizeof(conn{}), unsafe.Sizeof(packetReader{}))
}
