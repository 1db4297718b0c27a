package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/mqttclient"
)

// mqttConn is one connection of the load tool, speaking tern's codec.
type mqttConn struct {
	nc net.Conn
	r  *packet.Reader
	v  packet.Version
	// keepAlive is what the CONNECT asks for, in seconds.
	keepAlive uint16
	// receiveMax is the broker's Receive Maximum from a v5 CONNACK (0 when it gave none).
	receiveMax uint16
	// sessionPresent is the CONNACK's Session Present flag: the broker resumed a session.
	sessionPresent bool
	// connackIn is how long the CONNACK took after the CONNECT was written.
	connackIn time.Duration
	// dialIn is how long the dial took: TCP connect, and the TLS handshake for mqtts://.
	dialIn time.Duration
	// resumed says the TLS handshake resumed an earlier session (mqtts:// with a session cache).
	resumed bool
	// group is the TLS key exchange the handshake used (0 without TLS).
	group tls.CurveID
}

// session says how a connection treats its session. The zero value is a clean session that
// ends with the connection (Clean Session 1 in 3.1.1; Clean Start 1 and no Session Expiry
// Interval in 5).
type session struct {
	// persistent keeps the session after the connection ends: Clean Session 0 (3.1.1), or
	// Clean Start 0 with a Session Expiry Interval of expiry seconds (5).
	persistent bool
	expiry     uint32
}

// spreadSources makes the dialer spread its connections over the local addresses 127.0.0.1 to
// 127.0.0.<n>, round robin: one source address reaches one broker address from fewer than 64k
// ports. Only for mqtt:// to a loopback broker.
func (d *dialer) spreadSources(n int) error {
	if d.custom != nil || d.ep.Scheme != "mqtt" {
		return errors.New("source addresses: only for mqtt:// URLs")
	}
	if n > 254 {
		return fmt.Errorf("source addresses: %d, at most 254", n)
	}
	addr := d.ep.Addr
	var next atomic.Uint32
	d.custom = func(ctx context.Context) (net.Conn, error) {
		i := next.Add(1) % uint32(n)
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}}
		return nd.DialContext(ctx, "tcp", addr)
	}
	return nil
}

// dialer opens connections for a run.
type dialer struct {
	ep      mqttclient.Endpoint
	opts    mqttclient.Options
	custom  func(ctx context.Context) (net.Conn, error)
	v       packet.Version
	timeout time.Duration
	// keepAlive is the keep alive CONNECT asks for, in seconds (0: none).
	keepAlive uint16
}

func newDialer(cfg *Config) (*dialer, error) {
	d := &dialer{v: cfg.version(), timeout: cfg.ConnectTimeout, custom: cfg.Dial,
		opts: mqttclient.Options{Insecure: cfg.Insecure, CAFile: cfg.CAFile, Groups: cfg.TLSGroups}}
	if cfg.TLSResume {
		// Bounded: one ticket per server name is all a run needs, a few spare for races.
		d.opts.SessionCache = tls.NewLRUClientSessionCache(64)
	}
	if d.custom == nil {
		ep, err := mqttclient.Parse(cfg.URL)
		if err != nil {
			return nil, err
		}
		d.ep = ep
	}
	return d, nil
}

// connect dials and completes CONNECT/CONNACK. bufSize is the read buffer of the connection's
// packet.Reader (large for subscribers, which read everything through it).
func (d *dialer) connect(ctx context.Context, clientID string, bufSize int, sess session) (*mqttConn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var nc net.Conn
	var err error
	dialStart := time.Now()
	if d.custom != nil {
		nc, err = d.custom(ctx)
	} else {
		nc, err = d.ep.Dial(ctx, d.opts)
	}
	if err != nil {
		return nil, err
	}
	c := &mqttConn{r: packet.NewReader(nc, bufSize, 0), nc: nc, v: d.v, keepAlive: d.keepAlive, dialIn: time.Since(dialStart)}
	switch tc := nc.(type) {
	case *net.TCPConn:
		_ = tc.SetNoDelay(true)
	case *tls.Conn:
		st := tc.ConnectionState()
		c.resumed, c.group = st.DidResume, st.CurveID
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	defer stop()
	if err := c.handshake(clientID, sess); err != nil {
		_ = nc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *mqttConn) handshake(clientID string, sess session) error {
	// Keep alive 0 unless asked: a subscriber that only receives never has to ping, and the run
	// is bounded by its own deadlines.
	cp := packet.Connect{Version: c.v, CleanStart: !sess.persistent, ClientID: []byte(clientID), KeepAlive: c.keepAlive}
	if sess.persistent && c.v == packet.V5 {
		cp.Props.SessionExpiry = sess.expiry
		cp.Props.Set(packet.PropSessionExpiry)
	}
	out, err := cp.Append(nil, c.v)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := c.nc.Write(out); err != nil {
		return fmt.Errorf("sending CONNECT: %w", err)
	}
	typ, flags, body, err := c.r.Next()
	c.connackIn = time.Since(start)
	if err != nil {
		return fmt.Errorf("waiting for CONNACK: %w", err)
	}
	if typ != packet.CONNACK {
		return fmt.Errorf("expected CONNACK, got %s", packet.TypeName(typ))
	}
	var ack packet.Connack
	if err := ack.Decode(flags, body, c.v); err != nil {
		return fmt.Errorf("bad CONNACK: %w", err)
	}
	if ack.Reason != packet.Success {
		if c.v == packet.V5 {
			return fmt.Errorf("connection refused: %s", ack.Reason)
		}
		return fmt.Errorf("connection refused: return code %d", ack.Reason)
	}
	c.sessionPresent = ack.SessionPresent
	if c.v == packet.V5 && ack.Props.Has(packet.PropReceiveMax) {
		c.receiveMax = ack.Props.ReceiveMax
	}
	return nil
}

// subscribe sends one SUBSCRIBE and waits for its SUBACK, returning the granted QoS. Packets
// before the SUBACK (a retained message, say) are skipped.
func (c *mqttConn) subscribe(filter string, qos byte, deadline time.Time) (byte, error) {
	return c.subscribeAll([]string{filter}, qos, deadline)
}

// subscribeAll is subscribe to several filters in one SUBSCRIBE; it returns the first's QoS.
func (c *mqttConn) subscribeAll(filters []string, qos byte, deadline time.Time) (byte, error) {
	_ = c.nc.SetDeadline(deadline)
	defer func() { _ = c.nc.SetDeadline(time.Time{}) }()
	s := packet.Subscribe{PacketID: 1}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, packet.Subscription{Filter: []byte(f), QoS: qos})
	}
	out, err := s.Append(nil, c.v)
	if err != nil {
		return 0, err
	}
	if _, err := c.nc.Write(out); err != nil {
		return 0, fmt.Errorf("sending SUBSCRIBE: %w", err)
	}
	for {
		typ, flags, body, err := c.r.Next()
		if err != nil {
			return 0, fmt.Errorf("waiting for SUBACK: %w", err)
		}
		switch typ {
		case packet.SUBACK:
			var ack packet.Suback
			if err := ack.Decode(flags, body, c.v); err != nil {
				return 0, fmt.Errorf("bad SUBACK: %w", err)
			}
			if len(ack.Reasons) != len(filters) {
				return 0, fmt.Errorf("SUBACK with %d reason codes for %d filters", len(ack.Reasons), len(filters))
			}
			for i, r := range ack.Reasons {
				if r.IsError() {
					return 0, fmt.Errorf("subscription to %s refused: %s", filters[i], r)
				}
			}
			return byte(ack.Reasons[0]), nil
		case packet.DISCONNECT:
			return 0, fmt.Errorf("broker disconnected while subscribing: %s", disconnectReason(flags, body, c.v))
		}
	}
}

// disconnect sends DISCONNECT (best effort, bounded) and closes.
func (c *mqttConn) disconnect() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	out, _ := (&packet.Disconnect{}).Append(nil, c.v)
	_, _ = c.nc.Write(out)
	_ = c.nc.Close()
}

func disconnectReason(flags byte, body []byte, v packet.Version) string {
	var d packet.Disconnect
	if err := d.Decode(flags, body, v); err != nil {
		return "malformed DISCONNECT"
	}
	s := d.Reason.String()
	if len(d.Props.ReasonString) > 0 {
		s += " (" + string(d.Props.ReasonString) + ")"
	}
	return s
}
