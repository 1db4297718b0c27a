package mqtt

import (
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// TestSizes logs the size of the structures every connection holds, for the figures in
// docs/decisions.md ("An idle connection's bytes", second to fourth pass), and fails when the
// connection outgrows the allocator's 256-byte size class: a field added without thought costs
// every idle connection the next class's 32 bytes more.
func TestSizes(t *testing.T) {
	size := unsafe.Sizeof(conn{})
	t.Logf("conn %d B (its packetReader %d B), connRare %d B", size, unsafe.Sizeof(packetReader{}),
		unsafe.Sizeof(connRare{}))
	if size > 256 {
		t.Errorf("conn is %d bytes, past the 256-byte size class", size)
	}
}

// The reason the server ended a connection lives in the connection's rare part; it still reaches
// the session's end, and so the disconnected event.
func TestServerEndReasonReachesTheEvent(t *testing.T) {
	addr := startServer(t, nil)
	w := dial(t, addr, packet.V311)
	w.connect("watcher", 0)
	w.subscribe("$SYS/events/disconnected")
	c := dial(t, addr, packet.V311)
	c.connect("lazy", 1)
	for {
		p := w.must(10 * time.Second)
		pub, ok := p.(*packet.Publish)
		if !ok || !strings.Contains(string(pub.Payload), `"lazy"`) {
			continue
		}
		if !strings.Contains(string(pub.Payload), `"reason":"keep alive timeout"`) {
			t.Fatalf("disconnected event %s, want the reason keep alive timeout", pub.Payload)
		}
		return
	}
}
