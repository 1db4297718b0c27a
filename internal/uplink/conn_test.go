package uplink

import (
	"net"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
)

// While the reader holds, writes wait in the buffer (no writer is started) and leave together at
// release: one write (one TLS record) for a burst instead of one per packet. net.Pipe hands each
// write to one read, so the first read shows that they were joined.
func TestConnHoldJoinsWrites(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	lim := netio.Limits{Soft: 1 << 20, WriteTimeout: 5 * time.Second}
	u := &upConn{nc: a, rd: packet.NewReader(a, 0, 0)}
	u.out.Init(a, &netio.Shared{Lim: lim, Stats: &upStats, Pool: writeBufs}, u)
	u.hold()
	for range 3 {
		if err := u.writePacket(&packet.Pingreq{}); err != nil {
			t.Fatal(err)
		}
	}
	u.out.Lock()
	queued := u.out.QueuedLocked()
	u.out.Unlock()
	if queued != 6 {
		t.Fatalf("%d bytes wait while held, want 6", queued)
	}
	u.release()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := b.Read(buf)
	if err != nil || n != 6 {
		t.Fatalf("first read: %d bytes (%v), want the three PINGREQs (6 bytes) at once", n, err)
	}
	// Without holding, a packet goes at once.
	if err := u.writePacket(&packet.Pingreq{}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Read(buf); err != nil || n != 2 {
		t.Fatalf("unheld: %d bytes (%v)", n, err)
	}
}
