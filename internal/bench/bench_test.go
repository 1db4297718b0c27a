package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
)

func startTern(t testing.TB) *server.Server {
	t.Helper()
	return servertest.Start(t, func(c *config.Config) { c.Listen.HTTP = "" })
}

func checkClean(t *testing.T, r *Result) {
	t.Helper()
	if r.Sent == 0 || r.Delivered != r.Expected || r.Lost != 0 || r.Duplicates != 0 || r.Foreign != 0 || len(r.Errors) > 0 {
		var b bytes.Buffer
		_ = r.WriteText(&b)
		t.Fatalf("run not clean:\n%s", b.String())
	}
	l := r.Latency
	if !(l.Min > 0 && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.P9999 && l.P9999 <= l.Max) {
		t.Fatalf("percentiles out of order: %+v", l)
	}
	if l.Max > 30e6 {
		t.Fatalf("max latency %.0f µs is beyond the run", l.Max)
	}
	if r.Hist.Count() != r.Delivered {
		t.Fatalf("histogram holds %d values for %d deliveries", r.Hist.Count(), r.Delivered)
	}
	if r.DeliverRate <= 0 || r.PublishRate <= 0 || r.ElapsedSeconds <= 0 {
		t.Fatalf("rates: %+v", r)
	}
	if r.QoS > 0 && (r.Acked != r.Sent || r.Unacked != 0 || r.Refused != 0) {
		t.Fatalf("QoS %d: sent %d acked %d unacked %d refused %d", r.QoS, r.Sent, r.Acked, r.Unacked, r.Refused)
	}
}

// TestEngineAgainstTern is the correctness guard: against a real tern, every run of a few
// thousand messages must deliver exactly what was expected.
func TestEngineAgainstTern(t *testing.T) {
	srv := startTern(t)
	cases := []struct {
		pubs, subs int
		shared     bool
		count      int
		rate       float64
	}{
		{1, 1, false, 3000, 0},
		// Paced: flat-out QoS 0 fan-out may legitimately drop at a slow (race-detector) subscriber.
		{2, 3, false, 1500, 20000},
		{2, 3, true, 1500, 0},
	}
	for _, qos := range []byte{0, 1, 2} {
		for _, ver := range []string{"3.1.1", "5"} {
			for _, c := range cases {
				rate := c.rate
				if qos > 0 {
					rate = 0
				}
				name := fmt.Sprintf("qos%d/v%s/%dto%d", qos, ver, c.pubs, c.subs)
				if c.shared {
					name += "-shared"
				}
				t.Run(name, func(t *testing.T) {
					url := "mqtt://" + srv.Addr("mqtt")
					if c.shared {
						url = "unix://" + srv.Addr("unix")
					}
					r, err := Run(context.Background(), Config{
						URL: url, MQTTVersion: ver, Publishers: c.pubs, Subscribers: c.subs, Shared: c.shared,
						QoS: qos, Count: c.count, Rate: rate, Duration: 20 * time.Second, Warmup: 10,
						Topic: "guard/" + name,
					})
					if err != nil {
						t.Fatal(err)
					}
					if r.Sent != uint64(c.pubs*c.count) {
						t.Fatalf("sent %d, want %d", r.Sent, c.pubs*c.count)
					}
					want := r.Sent * uint64(c.subs)
					if c.shared {
						want = r.Sent
					}
					if r.Expected != want {
						t.Fatalf("expected %d, want %d", r.Expected, want)
					}
					checkClean(t, r)
				})
			}
		}
	}
}

func TestEngineStopsAtDuration(t *testing.T) {
	// No count: the duration bound ends the run, promptly.
	srv := startTern(t)
	begin := time.Now()
	res, err := Run(context.Background(), Config{
		URL: "mqtt://" + srv.Addr("mqtt"), Publishers: 1, Subscribers: 1, Count: 0, Rate: 2000,
		Duration: 300 * time.Millisecond, Drain: 200 * time.Millisecond, Topic: "stop/test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(begin); el > 5*time.Second {
		t.Fatalf("run took %s", el)
	}
	if res.Sent < 100 || res.Sent > 700 {
		t.Fatalf("sent %d at 2000/s for 0.3 s", res.Sent)
	}
	checkClean(t, res)
}

func TestEngineCountsLostMessages(t *testing.T) {
	// A "broker" that drops every odd message and doubles every even one; the run must end by
	// the drain bound and count both.
	l, err := startLossy(t)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	res, err := Run(context.Background(), Config{URL: "mqtt://" + l, Publishers: 1, Subscribers: 1,
		Count: 1000, Duration: 5 * time.Second, Drain: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(begin) > 5*time.Second {
		t.Fatalf("lossy run took %s", time.Since(begin))
	}
	if res.Sent != 1000 || res.Delivered != 500 || res.Lost != 500 || res.Duplicates != 500 {
		t.Fatalf("sent %d delivered %d lost %d dups %d; want 1000/500/500/500", res.Sent, res.Delivered, res.Lost, res.Duplicates)
	}
}

// startLossy runs a reflector variant that delivers each even-numbered message twice and drops
// the odd ones, to check the loss and duplicate accounting.
func startLossy(t *testing.T) (string, error) {
	r, err := StartReflector("127.0.0.1:0")
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { _ = r.Close() })
	r.filter = func(payload []byte) int {
		st, ok := readStamp(payload)
		if !ok || st.warmup {
			return 1
		}
		if st.seq%2 == 1 {
			return 0
		}
		return 2
	}
	return r.Addr(), nil
}

func TestReflectorCeiling(t *testing.T) {
	r, err := StartReflector("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, qos := range []byte{0, 1, 2} {
		res, err := Run(context.Background(), Config{URL: "mqtt://" + r.Addr(), Publishers: 1, Subscribers: 2,
			QoS: qos, Count: 20000, Duration: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		checkClean(t, res)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Publishers: 0, Duration: time.Second},
		{Publishers: 1, Duration: time.Second, Size: 10},
		{Publishers: 1, Duration: time.Second, QoS: 3},
		{Publishers: 1},
		{Publishers: 1, Duration: time.Second, MQTTVersion: "4.0"},
		{Publishers: 1, Duration: time.Second, URL: "http://x"},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestIdleHoldsConnections(t *testing.T) {
	srv := startTern(t)
	ready := make(chan IdleResult, 1)
	res, err := Idle(context.Background(), Config{URL: "unix://" + srv.Addr("unix")}, IdleOptions{Conns: 200, Hold: 50 * time.Millisecond},
		func(r IdleResult) { ready <- r })
	if err != nil {
		t.Fatal(err)
	}
	if r := <-ready; r.Opened != 200 {
		t.Fatalf("ready with %d open", r.Opened)
	}
	if res.Opened != 200 || res.Dropped != 0 {
		t.Fatalf("idle: %+v", res)
	}
}

// A fan-out reaches every idle connection, over several source addresses, and the keep alive
// pings hold them open past 1.5 times their keep alive.
func TestIdleFanOutOverSourceAddresses(t *testing.T) {
	srv := startTern(t)
	const n = 60
	res, err := Idle(context.Background(), Config{URL: "mqtt://" + srv.Addr("mqtt")},
		IdleOptions{Conns: n, Hold: 2 * time.Second, KeepAlive: 1, SourceAddrs: 3, FanOut: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != n || res.Dropped != 0 || res.FanOutReceived != n || res.ConnackP99 <= 0 {
		t.Fatalf("idle: %+v", res)
	}
}

func TestHasPublish(t *testing.T) {
	pub, _ := (&packet.Publish{Topic: []byte("a"), Payload: []byte("x")}).Append(nil, packet.V311)
	ping := []byte{packet.PINGRESP << 4, 0}
	for _, c := range []struct {
		b    []byte
		want bool
	}{
		{nil, false},
		{ping, false},
		{pub, true},
		{append(append([]byte{}, ping...), pub...), true},
		{append(append([]byte{}, ping...), pub[:2]...), true}, // its fixed header says PUBLISH
		{ping[:1], false},
	} {
		if got := hasPublish(c.b); got != c.want {
			t.Errorf("hasPublish(% x) = %v", c.b, got)
		}
	}
}

// The hot paths must not allocate per message.

func testPublisher(tb testing.TB, qos byte, v packet.Version) *publisher {
	cfg := Config{Publishers: 1, Duration: time.Second, QoS: qos, Topic: "bench"}
	if err := cfg.normalize(); err != nil {
		tb.Fatal(err)
	}
	p, err := newPublisher(0, 7, &mqttConn{v: v}, &cfg, time.Now(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestPublisherEncodeDoesNotAllocate(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		p := testPublisher(t, 1, v)
		i := uint64(0)
		n := testing.AllocsPerRun(1000, func() {
			for k := 0; k < 100; k++ {
				p.appendOne(i, uint16(i%64+1))
				i++
			}
			p.buf = p.buf[:0]
		})
		if n != 0 {
			t.Fatalf("v%s: encoding allocates %v times per 100 messages", v, n)
		}
	}
}

// publishStream encodes n distinct measured messages from publisher 0 of run 7.
func publishStream(tb testing.TB, qos byte, v packet.Version, n int) []byte {
	p := testPublisher(tb, qos, v)
	var all []byte
	for i := 0; i < n; i++ {
		p.appendOne(uint64(i), uint16(i%64+1))
		all = append(all, p.buf...)
		p.buf = p.buf[:0]
	}
	return all
}

// loopReader serves data over and over, as an endless stream.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

func testSubscriber(v packet.Version, stream []byte, perPub uint64) *subscriber {
	c := &mqttConn{v: v, r: packet.NewReader(&loopReader{data: stream}, 256<<10, 0)}
	return newSubscriber(0, 7, c, 1, perPub, time.Now())
}

// consume runs the subscriber's decode loop over n packets, acks going into its buffer.
func consume(tb testing.TB, s *subscriber, n int) {
	for i := 0; i < n; i++ {
		typ, flags, body, err := s.c.r.Next()
		if err != nil {
			tb.Fatal(err)
		}
		if err := s.handle(typ, flags, body, int64(time.Since(s.t0))); err != nil {
			tb.Fatal(err)
		}
		s.out = s.out[:0]
	}
}

func TestSubscriberDecodeDoesNotAllocate(t *testing.T) {
	const n = 2000
	for _, qos := range []byte{0, 1, 2} {
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			s := testSubscriber(v, publishStream(t, qos, v, n), n)
			allocs := testing.AllocsPerRun(20, func() {
				clear(s.seen[0])
				consume(t, s, n)
			})
			if allocs != 0 {
				t.Fatalf("QoS %d v%s: decoding %d messages allocates %v times", qos, v, n, allocs)
			}
			if s.unique != 21*n || s.dups != 0 || s.hist.Count() != 21*n {
				t.Fatalf("recorded %d (dups %d, hist %d), want %d", s.unique, s.dups, s.hist.Count(), 21*n)
			}
		}
	}
}

func BenchmarkPublisherEncode(b *testing.B) {
	p := testPublisher(b, 0, packet.V311)
	b.ReportAllocs()
	b.SetBytes(int64(p.pktSize))
	i := uint64(0)
	for b.Loop() {
		p.appendOne(i, 0)
		i++
		if len(p.buf) >= p.batchMax {
			p.buf = p.buf[:0]
		}
	}
}

func BenchmarkSubscriberDecode(b *testing.B) {
	const n = 100_000
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			stream := publishStream(b, qos, packet.V311, n)
			s := testSubscriber(packet.V311, stream, n)
			b.ReportAllocs()
			b.SetBytes(int64(len(stream) / n))
			k := 0
			for b.Loop() {
				if k%n == 0 {
					clear(s.seen[0])
				}
				typ, flags, body, err := s.c.r.Next()
				if err != nil {
					b.Fatal(err)
				}
				if err := s.handle(typ, flags, body, int64(k)); err != nil {
					b.Fatal(err)
				}
				s.out = s.out[:0]
				k++
			}
		})
	}
}

// BenchmarkReflector1to1 measures the client's own end-to-end ceiling: one publisher, one
// subscriber, through the trivial in-process forwarder. msgs/s is reported as a metric.
func BenchmarkReflector1to1(b *testing.B) {
	r, err := StartReflector("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			for b.Loop() {
				res, err := Run(context.Background(), Config{URL: "mqtt://" + r.Addr(), Publishers: 1,
					Subscribers: 1, QoS: qos, Count: 500_000, Duration: 30 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				if res.Lost != 0 {
					b.Fatalf("lost %d", res.Lost)
				}
				b.ReportMetric(res.DeliverRate, "msgs/s")
			}
		})
	}
}

// A TLS storm with a shared session cache resumes on every connection (the cache is primed
// before the storm, so even the first Concurrency connections find a ticket); without the cache
// none resumes. The dial times (handshakes) are recorded either way.
func TestIdleTLSStormResumes(t *testing.T) {
	pki := servertest.NewPKI(t)
	cert, key := pki.Server()
	srv := servertest.Start(t, func(c *config.Config) {
		c.Listen.HTTP = ""
		c.Listen.MQTTTLS = "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: cert, KeyFile: key}
	})
	const n = 24
	for _, resume := range []bool{true, false} {
		cfg := Config{URL: "mqtts://" + srv.Addr("mqtt_tls"), CAFile: pki.CA(), TLSResume: resume}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := Idle(ctx, cfg, IdleOptions{Conns: n, Hold: time.Millisecond, Concurrency: 8}, nil)
		cancel()
		if err != nil {
			t.Fatalf("resume %v: %v", resume, err)
		}
		want := 0
		if resume {
			want = n
		}
		if res.Opened != n || res.TLSResumed != want || res.DialP50 <= 0 || res.DialP99 < res.DialP50 {
			t.Fatalf("resume %v: %+v, want %d resumed", resume, res, want)
		}
		if res.TLSGroup != tls.X25519MLKEM768.String() {
			t.Fatalf("resume %v: key exchange %q, want Go's default %v", resume, res.TLSGroup, tls.X25519MLKEM768)
		}
	}
	// Limited to X25519, as a peer built on an older TLS library negotiates.
	cfg := Config{URL: "mqtts://" + srv.Addr("mqtt_tls"), CAFile: pki.CA(), TLSGroups: []tls.CurveID{tls.X25519}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Idle(ctx, cfg, IdleOptions{Conns: 4, Hold: time.Millisecond, Concurrency: 2}, nil)
	if err != nil || res.Opened != 4 || res.TLSGroup != tls.X25519.String() {
		t.Fatalf("x25519 only: %+v, %v", res, err)
	}
}

// A fan-out reaches idle connections whose bytes only their own reader can give: over TLS (the
// broker's tlsrec connections, parked and detached by then) and over WebSocket.
func TestIdleFanOutOverTLSAndWebSocket(t *testing.T) {
	pki := servertest.NewPKI(t)
	cert, key := pki.Server()
	srv := servertest.Start(t, func(c *config.Config) {
		c.Listen.MQTTTLS = "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: cert, KeyFile: key}
	})
	const n = 40
	for _, cfg := range []Config{
		{URL: "mqtts://" + srv.Addr("mqtt_tls"), CAFile: pki.CA()},
		{URL: "ws://" + srv.Addr("http") + "/mqtt"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		res, err := Idle(ctx, cfg, IdleOptions{Conns: n, Hold: 300 * time.Millisecond, Concurrency: 8, FanOut: true}, nil)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", cfg.URL, err)
		}
		if res.Opened != n || res.FanOutReceived != n || res.FanOutLastMS <= 0 || res.Dropped != 0 {
			t.Fatalf("%s: %+v", cfg.URL, res)
		}
	}
}
