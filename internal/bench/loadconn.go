package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// LoadConn is one MQTT 3.1.1 connection of the load engine for the tree's other load tools
// (bench/subload): it subscribes and unsubscribes in batches, writes batched QoS 0 publishes
// and counts what arrives, with tern's codec, so that the tool is not the ceiling of what it
// measures (a paho client per message is, at a few tens of thousands of messages a second).
// Not safe for concurrent use, except Close and a running Count; Subscribe and Unsubscribe read
// the connection, so they come before Count.
type LoadConn struct {
	c       *mqttConn
	timeout time.Duration
	out     []byte
}

// loadBatch is how many bytes of publishes a LoadConn encodes before it writes them.
const loadBatch = 32 << 10

// DialLoad connects to url (mqtt://, mqtts://, unix://...) as clientID with a clean session;
// timeout bounds the connect and each later write or acknowledgement wait.
func DialLoad(ctx context.Context, url, clientID string, timeout time.Duration) (*LoadConn, error) {
	if timeout <= 0 {
		return nil, errors.New("load connection: the timeout must be positive")
	}
	d, err := newDialer(&Config{URL: url, ConnectTimeout: timeout})
	if err != nil {
		return nil, err
	}
	c, err := d.connect(ctx, clientID, 64<<10, session{})
	if err != nil {
		return nil, err
	}
	return &LoadConn{c: c, timeout: timeout}, nil
}

// Subscribe subscribes to filters at QoS 0 in one SUBSCRIBE and waits for the SUBACK.
func (l *LoadConn) Subscribe(filters []string) error {
	_, err := l.c.subscribeAll(filters, 0, time.Now().Add(l.timeout))
	return err
}

// Unsubscribe unsubscribes from filters in one UNSUBSCRIBE and waits for the UNSUBACK.
// PUBLISHes that come first are skipped.
func (l *LoadConn) Unsubscribe(filters []string) error {
	_ = l.c.nc.SetDeadline(time.Now().Add(l.timeout))
	defer func() { _ = l.c.nc.SetDeadline(time.Time{}) }()
	u := packet.Unsubscribe{PacketID: 2}
	for _, f := range filters {
		u.Filters = append(u.Filters, []byte(f))
	}
	out, err := u.Append(nil, l.c.v)
	if err != nil {
		return err
	}
	if _, err := l.c.nc.Write(out); err != nil {
		return fmt.Errorf("sending UNSUBSCRIBE: %w", err)
	}
	for {
		typ, flags, body, err := l.c.r.Next()
		if err != nil {
			return fmt.Errorf("waiting for UNSUBACK: %w", err)
		}
		switch typ {
		case packet.UNSUBACK:
			var ack packet.Unsuback
			if err := ack.Decode(flags, body, l.c.v); err != nil {
				return fmt.Errorf("bad UNSUBACK: %w", err)
			}
			return nil
		case packet.DISCONNECT:
			return fmt.Errorf("broker disconnected while unsubscribing: %s", disconnectReason(flags, body, l.c.v))
		}
	}
}

// Publish queues a QoS 0 PUBLISH, writing the queue once it holds loadBatch bytes.
func (l *LoadConn) Publish(topic string, payload []byte) error {
	var err error
	if l.out, err = (&packet.Publish{Topic: []byte(topic), Payload: payload}).Append(l.out, l.c.v); err != nil {
		return err
	}
	if len(l.out) >= loadBatch {
		return l.Flush()
	}
	return nil
}

// Flush writes the queued publishes.
func (l *LoadConn) Flush() error {
	if len(l.out) == 0 {
		return nil
	}
	_ = l.c.nc.SetWriteDeadline(time.Now().Add(l.timeout))
	_, err := l.c.nc.Write(l.out)
	l.out = l.out[:0]
	if err != nil {
		return fmt.Errorf("publishing: %w", err)
	}
	return nil
}

// Count reads until the connection ends, adding one to n for each PUBLISH and then offering
// progress a token (without blocking; nil: none). It returns the error that ended the reading
// (after Close, a closed-connection error).
func (l *LoadConn) Count(n *atomic.Int64, progress chan<- struct{}) error {
	for {
		typ, flags, body, err := l.c.r.Next()
		if err != nil {
			return err
		}
		switch typ {
		case packet.PUBLISH:
			n.Add(1)
			if progress != nil {
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		case packet.DISCONNECT:
			return fmt.Errorf("broker disconnected: %s", disconnectReason(flags, body, l.c.v))
		}
	}
}

// Close sends DISCONNECT (bounded) and closes the connection.
func (l *LoadConn) Close() { l.c.disconnect() }
