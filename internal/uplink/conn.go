package uplink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/mqttclient"
	"github.com/ternmq/tern/internal/netio"
)

// upConn is the connection to the designated router: tern's MQTT codec on a netio.Conn, which
// bounds what waits to be written and writes it from one writer; the link's own goroutine reads.
type upConn struct {
	nc  net.Conn
	out netio.Conn
	rd  *packet.Reader
	// pub and scratch are encoding space, used under out's lock.
	pub     packet.Publish
	scratch []byte
	// room is told when a buffer that refused a QoS 0 message has drained.
	room func()
	// held: the reader is handling packets it has already read (a burst of acknowledgements,
	// each of which lets the next message go); what is written meanwhile waits in the buffer
	// (pending) and leaves in one write and one TLS record at the end of the burst, instead of
	// one each. Both under out's lock.
	held, pending bool
}

var writeBufs = netio.NewBufPool(nil)

var upStats netio.Stats

// dial opens the connection (TLS with the site's certificate; the designated router's is
// verified) within timeout.
func dial(ctx context.Context, ep mqttclient.Endpoint, opts mqttclient.Options, sh *netio.Shared) (*upConn, error) {
	nc, err := ep.Dial(ctx, opts)
	if err != nil {
		return nil, err
	}
	u := &upConn{nc: nc, rd: packet.NewReader(nc, 0, 0)}
	u.out.Init(nc, sh, u)
	return u, nil
}

// StopReading implements netio.Events.
func (u *upConn) StopReading() { netio.WakeReader(u.nc) }

// Room implements netio.Events.
func (u *upConn) Room() {
	if u.room != nil {
		u.room()
	}
}

func (u *upConn) closeNow() { u.out.CloseNow(errors.New("link closed")) }

// writePacket queues a control packet.
func (u *upConn) writePacket(p packet.Packet) error {
	o := &u.out
	o.Lock()
	defer o.Unlock()
	if o.ClosedLocked() {
		return net.ErrClosed
	}
	buf, err := p.Append(o.BufLocked(), packet.V5)
	if err != nil {
		return err
	}
	u.commitLocked(buf)
	return nil
}

// commitLocked queues buf for writing, at once or at the end of the reader's burst. The caller
// holds out's lock.
func (u *upConn) commitLocked(buf []byte) {
	if u.held {
		u.out.SetBufLocked(buf)
		u.pending = true
		return
	}
	u.out.CommitLocked(buf, nil)
}

// hold makes writes wait for release; the reader holds while it has whole packets to handle.
func (u *upConn) hold() {
	u.out.Lock()
	u.held = true
	u.out.Unlock()
}

// release writes what waited; the reader releases before it may wait for input.
func (u *upConn) release() {
	o := &u.out
	o.Lock()
	defer o.Unlock()
	u.held = false
	if u.pending && !o.ClosedLocked() {
		o.CommitLocked(o.BufLocked(), nil)
	}
	u.pending = false
}

// writePublish implements writer.
func (u *upConn) writePublish(d broker.Delivery, origin string, maxPacket int) broker.SendResult {
	o := &u.out
	o.Lock()
	defer o.Unlock()
	if o.ClosedLocked() {
		return broker.Sent
	}
	if d.QoS == 0 && o.FullLocked() {
		return broker.Busy
	}
	buf := o.BufLocked()
	start := len(buf)
	buf, scratch, err := appendPublish(buf, &u.pub, u.scratch, d, origin)
	u.scratch = scratch
	if err != nil || maxPacket > 0 && len(buf)-start > maxPacket {
		o.SetBufLocked(buf[:start])
		return broker.TooLarge
	}
	u.commitLocked(buf)
	return broker.Sent
}

// next reads the next packet, waiting until deadline at most.
func (u *upConn) next(deadline time.Time) (typ, flags byte, body []byte, err error) {
	if err := u.out.ArmRead(deadline); err != nil {
		return 0, 0, nil, err
	}
	return u.rd.Next()
}

// handshake sends CONNECT and reads the CONNACK.
func (u *upConn) handshake(c *packet.Connect, timeout time.Duration) (*packet.Connack, error) {
	c.Version = packet.V5
	if err := u.writePacket(c); err != nil {
		return nil, err
	}
	typ, flags, body, err := u.next(time.Now().Add(timeout))
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, errors.New("no CONNACK in time")
		}
		return nil, err
	}
	if typ != packet.CONNACK {
		return nil, fmt.Errorf("%s instead of CONNACK", packet.TypeName(typ))
	}
	var ack packet.Connack
	if err := ack.Decode(flags, body, packet.V5); err != nil {
		return nil, err
	}
	if ack.Reason != packet.Success {
		return &ack, &refusedError{code: ack.Reason, reason: string(ack.Props.ReasonString)}
	}
	return &ack, nil
}

// refusedError is the designated router's refusal of the link's CONNECT.
type refusedError struct {
	code   packet.ReasonCode
	reason string
}

func (e *refusedError) Error() string {
	if e.reason != "" {
		return fmt.Sprintf("refused: %v (%s)", e.code, e.reason)
	}
	return fmt.Sprintf("refused: %v", e.code)
}
