package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// IdleOptions says how Idle opens and holds its connections.
type IdleOptions struct {
	// Conns is how many connections to open, each with its own subscription.
	Conns int
	// Hold is how long they stay open and silent once all are open.
	Hold time.Duration
	// KeepAlive is the keep alive each CONNECT asks for, in seconds (0: none); during the hold
	// every connection sends a PINGREQ each KeepAlive/2, as a client would.
	KeepAlive uint16
	// Concurrency is how many connections are being opened at once (default 32): a connect
	// storm of that many clients.
	Concurrency int
	// SourceAddrs, when above 1, spreads the connections over the local addresses 127.0.0.1 to
	// 127.0.0.<SourceAddrs> (mqtt:// to a loopback broker only), since one source address
	// gives one broker address fewer than 64k connections.
	SourceAddrs int
	// FanOut also subscribes every connection to <Topic>/fanout and, at the end of the hold,
	// publishes one QoS 0 message there from another connection and measures how long until
	// every connection has it.
	FanOut bool
}

// IdleResult is what Idle measured.
type IdleResult struct {
	Opened int `json:"opened"`
	// Dropped counts connections the broker had closed by the end of the hold.
	Dropped        int     `json:"dropped"`
	ConnectSeconds float64 `json:"connect_s"`
	// ConnectsPerSecond is Opened / ConnectSeconds: connections opened (connected and
	// subscribed) per second during the storm.
	ConnectsPerSecond float64 `json:"connects_per_s"`
	// ConnackP50 ... are the CONNECT to CONNACK times of the storm, in µs.
	ConnackP50  float64 `json:"connack_p50_us"`
	ConnackP99  float64 `json:"connack_p99_us"`
	ConnackP999 float64 `json:"connack_p99_9_us"`
	ConnackMax  float64 `json:"connack_max_us"`
	// DialP50 and DialP99 are the times to open each connection before its CONNECT, in µs: the
	// TCP connect, and for mqtts:// the TLS handshake (full or resumed).
	DialP50 float64 `json:"dial_p50_us"`
	DialP99 float64 `json:"dial_p99_us"`
	// TLSResumed counts the storm's connections whose TLS handshake resumed a session (with
	// Config.TLSResume; 0 over TCP or when the broker issues no tickets).
	TLSResumed int `json:"tls_resumed"`
	// TLSGroup is the key exchange of the storm's TLS handshakes, as the first connection to
	// make one negotiated it (empty over TCP).
	TLSGroup string `json:"tls_group,omitempty"`
	// FanOutReceived counts the connections that got the fan-out message, and FanOutLastMS is
	// when the last of them had it, in ms after the publish was written. Readiness is checked
	// by sweeping the connections with non-blocking reads, so the figure is late by at most one
	// sweep (FanOutSweepMS, the longest one).
	FanOutReceived int     `json:"fanout_received,omitempty"`
	FanOutLastMS   float64 `json:"fanout_last_ms,omitempty"`
	FanOutSweepMS  float64 `json:"fanout_sweep_ms,omitempty"`
}

// fanOutWait bounds the wait for a fan-out message to reach every connection.
const fanOutWait = 60 * time.Second

// Idle opens o.Conns connections, each with one subscription (cfg.Topic/idle/<i>, at cfg.QoS;
// persistent sessions with cfg.Persistent), calls ready once all are open, keeps them open and
// silent (but for keep alive pings) for o.Hold or until ctx ends, optionally measures a fan-out
// to all of them, and closes them. It is for measuring a broker's memory per idle connection,
// its connect rate and how fast it reaches many idle connections.
func Idle(ctx context.Context, cfg Config, o IdleOptions, ready func(IdleResult)) (IdleResult, error) {
	cfg.Publishers = 1 // normalize insists on one; Idle publishes nothing but the fan-out
	if cfg.Duration <= 0 {
		cfg.Duration = o.Hold
	}
	if err := cfg.normalize(); err != nil {
		return IdleResult{}, err
	}
	if o.Conns < 1 {
		return IdleResult{}, fmt.Errorf("idle connections: %d", o.Conns)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	d, err := newDialer(&cfg)
	if err != nil {
		return IdleResult{}, err
	}
	if o.SourceAddrs > 1 {
		if err := d.spreadSources(o.SourceAddrs); err != nil {
			return IdleResult{}, err
		}
	}
	d.keepAlive = o.KeepAlive
	sess := session{persistent: cfg.Persistent, expiry: cfg.SessionExpiry}
	prefix := fmt.Sprintf("%s-idle-%08x", cfg.ClientPrefix, newRunID())
	if cfg.TLSResume && (d.ep.Scheme == "mqtts" || d.ep.Scheme == "wss") {
		if err := primeTLSSession(ctx, d, prefix); err != nil {
			return IdleResult{}, err
		}
	}
	cs := make([]*mqttConn, o.Conns)
	var mu sync.Mutex
	var connack, dial Histogram
	resumed := 0
	var group tls.CurveID
	begin := time.Now()
	err = connectAllN(ctx, o.Conns, o.Concurrency, func(ctx context.Context, i int) error {
		c, err := d.connect(ctx, fmt.Sprintf("%s-%d", prefix, i), 512, sess)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		mu.Lock()
		cs[i] = c
		connack.Record(uint64(c.connackIn))
		dial.Record(uint64(c.dialIn))
		if c.resumed {
			resumed++
		}
		if group == 0 {
			group = c.group
		}
		mu.Unlock()
		filters := []string{fmt.Sprintf("%s/idle/%d", cfg.Topic, i)}
		if o.FanOut {
			filters = append(filters, cfg.Topic+"/fanout")
		}
		if _, err := c.subscribeAll(filters, cfg.QoS, time.Now().Add(cfg.ConnectTimeout)); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		return nil
	})
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.disconnect()
			}
		}
	}()
	res := IdleResult{ConnectSeconds: time.Since(begin).Seconds()}
	for _, c := range cs {
		if c != nil {
			res.Opened++
		}
	}
	res.ConnectsPerSecond = float64(res.Opened) / res.ConnectSeconds
	us := func(v uint64) float64 { return float64(v) / 1e3 }
	res.ConnackP50, res.ConnackP99 = us(connack.Percentile(0.50)), us(connack.Percentile(0.99))
	res.ConnackP999, res.ConnackMax = us(connack.Percentile(0.999)), us(connack.Max())
	res.DialP50, res.DialP99 = us(dial.Percentile(0.50)), us(dial.Percentile(0.99))
	res.TLSResumed = resumed
	if group != 0 {
		res.TLSGroup = group.String()
	}
	if err != nil {
		return res, err
	}
	if ready != nil {
		ready(res)
	}
	holdIdle(ctx, cs, o)
	if o.FanOut && ctx.Err() == nil {
		if err := fanOut(ctx, d, &cfg, prefix, cs, &res); err != nil {
			return res, err
		}
	}
	// A live idle connection has nothing to read but PINGRESPs; a closed one reports the end.
	for _, c := range cs {
		if _, alive := peek(c.nc, nil); !alive {
			res.Dropped++
		}
	}
	return res, nil
}

// primeTLSSession opens and closes one connection before a storm with a shared TLS session
// cache, so that the storm's connections find a ticket and resume, as devices reconnecting with
// the session they kept would; without it the first Concurrency connections all race to a full
// handshake. The CONNACK read takes in the tickets the broker sends after its handshake.
func primeTLSSession(ctx context.Context, d *dialer, prefix string) error {
	c, err := d.connect(ctx, prefix+"-prime", 512, session{})
	if err != nil {
		return fmt.Errorf("priming the TLS session cache: %w", err)
	}
	c.disconnect()
	return nil
}

// holdIdle waits out o.Hold (or ctx), pinging every connection each KeepAlive/2.
func holdIdle(ctx context.Context, cs []*mqttConn, o IdleOptions) {
	end := time.NewTimer(o.Hold)
	defer end.Stop()
	var tick <-chan time.Time
	if o.KeepAlive > 0 {
		t := time.NewTicker(time.Duration(o.KeepAlive) * time.Second / 2)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-end.C:
			return
		case <-ctx.Done():
			return
		case <-tick:
			for _, c := range cs {
				_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = c.nc.Write([]byte{packet.PINGREQ << 4, 0})
			}
		}
	}
}

// fanOut publishes one QoS 0 message to <Topic>/fanout from a connection of its own and waits
// until each idle connection has a PUBLISH (or fanOutWait). Plain sockets are swept with
// non-blocking reads; a connection whose bytes only its own reader can give (TLS, WebSocket)
// gets a goroutine that reads it until the PUBLISH comes.
func fanOut(ctx context.Context, d *dialer, cfg *Config, prefix string, cs []*mqttConn, res *IdleResult) error {
	pub, err := d.connect(ctx, prefix+"-fanout", 512, session{})
	if err != nil {
		return fmt.Errorf("fan-out publisher: %w", err)
	}
	defer pub.disconnect()
	msg, err := (&packet.Publish{Topic: []byte(cfg.Topic + "/fanout"), Payload: []byte("fan-out")}).Append(nil, pub.v)
	if err != nil {
		return err
	}
	got := make([]bool, len(cs))
	start := time.Now()
	readers := startFanOutReaders(cs, got, start)
	buf := make([]byte, 4096)
	_ = pub.nc.SetWriteDeadline(start.Add(cfg.ConnectTimeout))
	if _, err := pub.nc.Write(msg); err != nil {
		return fmt.Errorf("fan-out publish: %w", err)
	}
	var sweepMax time.Duration
	var last time.Duration
	swept := 0
	for swept < len(cs)-readers.n && time.Since(start) < fanOutWait && ctx.Err() == nil {
		sweep := time.Now()
		for i, c := range cs {
			if got[i] {
				continue
			}
			if b, _ := peek(c.nc, buf); hasPublish(b) {
				got[i] = true
				swept++
				last = time.Since(start)
			}
		}
		sweepMax = max(sweepMax, time.Since(sweep))
	}
	received, readLast := readers.wait()
	res.FanOutReceived = swept + received
	res.FanOutLastMS = float64(max(last, readLast).Microseconds()) / 1e3
	res.FanOutSweepMS = float64(sweepMax.Microseconds()) / 1e3
	if res.FanOutReceived < len(cs) {
		return fmt.Errorf("fan-out: %d of %d connections got the message within %s", res.FanOutReceived, len(cs), fanOutWait)
	}
	return nil
}

// fanOutReaders are the goroutines reading the connections a sweep cannot.
type fanOutReaders struct {
	n        int
	wg       sync.WaitGroup
	mu       sync.Mutex
	received int
	last     time.Duration
}

// startFanOutReaders starts a reader for each connection without a descriptor of its own,
// marking it in got so that the sweep passes over it; each reads, until fanOutWait after start,
// until what it has read holds a PUBLISH (keep-alive PINGRESPs may come first).
func startFanOutReaders(cs []*mqttConn, got []bool, start time.Time) *fanOutReaders {
	r := &fanOutReaders{}
	for i, c := range cs {
		if _, ok := c.nc.(syscall.Conn); ok {
			continue
		}
		got[i] = true
		r.n++
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			_ = c.nc.SetReadDeadline(start.Add(fanOutWait))
			defer c.nc.SetReadDeadline(time.Time{})
			var b []byte
			chunk := make([]byte, 512)
			for len(b) < 64<<10 {
				k, err := c.nc.Read(chunk)
				b = append(b, chunk[:k]...)
				if hasPublish(b) {
					r.mu.Lock()
					r.received++
					r.last = max(r.last, time.Since(start))
					r.mu.Unlock()
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	return r
}

// wait waits for every reader and returns how many got the message, and the last arrival.
func (r *fanOutReaders) wait() (int, time.Duration) {
	r.wg.Wait()
	return r.received, r.last
}

// hasPublish reports whether b, read from an idle connection, holds a PUBLISH: it walks the
// packets' fixed headers (PINGRESPs come between). A packet cut short at the end is not one.
func hasPublish(b []byte) bool {
	for len(b) > 0 {
		typ, _, rem, hl, err := packet.ParseFixedHeader(b)
		if err != nil {
			return false
		}
		if typ == packet.PUBLISH {
			return true
		}
		if hl+rem > len(b) {
			return false
		}
		b = b[hl+rem:]
	}
	return false
}

// peek reads what the connection has now without waiting, into buf (nil: a scratch byte), and
// reports whether it is still open: a read that finds nothing is open, one that finds the end
// or an error is not. Connections without a descriptor (TLS, WebSocket) count as open.
func peek(nc net.Conn, buf []byte) ([]byte, bool) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	if buf == nil {
		buf = make([]byte, 64)
	}
	return peekRaw(rc, buf)
}
