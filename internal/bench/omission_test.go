package bench

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// TestRateLatencyIncludesAStall is the coordinated-omission check. A broker stalls for 300 ms in
// the middle of a run at 1,000 msg/s. Every message scheduled during the stall waits for it, so
// the one scheduled at the stall's start + d is delivered about (stall - d) late: rate × (stall -
// L) messages must show a latency of at least L, for any L below the stall, and p99 (the worst 10
// of 1,000) must be near the stall. Latency measured from the moment the publisher actually
// wrote a message hides that: the publisher is held up too (its write blocks, or its in-flight
// window is full), writes the overdue messages late, and only the one or few it had in hand when
// the stall began look slow.
func TestRateLatencyIncludesAStall(t *testing.T) {
	const (
		rate    = 1000.0
		count   = 1000
		stallAt = 400 // the measured sequence number whose arrival stalls the reflector
		stall   = 300 * time.Millisecond
	)
	cases := []struct {
		name     string
		qos      byte
		inflight int
		pipe     bool
	}{
		// QoS 0 over a net.Pipe, which buffers nothing: the publisher's write blocks at once,
		// as it would on TCP once the socket buffers fill.
		{name: "qos0-write-blocks", pipe: true},
		// QoS 1 over TCP with a window of 4: no acknowledgements come during the stall, so the
		// publisher waits for a packet identifier.
		{name: "qos1-window-full", qos: 1, inflight: 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := StartReflector("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var once sync.Once
			stalled := make(chan struct{})
			r.pause = func(payload []byte) {
				if st, ok := readStamp(payload); ok && !st.warmup && st.seq == stallAt {
					// The injected fault itself, not synchronisation: the broker stops
					// reading this connection for a known time.
					once.Do(func() { time.Sleep(stall); close(stalled) })
				}
			}
			cfg := Config{URL: "mqtt://" + r.Addr(), Publishers: 1, Subscribers: 1, QoS: c.qos,
				Inflight: c.inflight, Count: count, Rate: rate, Duration: 20 * time.Second,
				Drain: 2 * time.Second, Topic: "omission"}
			if c.pipe {
				cfg.Dial = func(context.Context) (net.Conn, error) {
					client, server := net.Pipe()
					if !r.serveConn(server) {
						return nil, net.ErrClosed
					}
					return client, nil
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkClean(t, res)
			select {
			case <-stalled:
			default:
				t.Fatal("the reflector never stalled")
			}
			var text bytes.Buffer
			_ = res.WriteText(&text)
			t.Logf("\n%s", text.String())
			stallUs := float64(stall / time.Microsecond)
			if res.Latency.P99 < 250e3 || res.Latency.Max < 0.95*stallUs || res.Latency.Max > stallUs+2e6 {
				t.Errorf("p99 %.0f µs and max %.0f µs: want p99 >= 250000 and max about the %s stall\n%s",
					res.Latency.P99, res.Latency.Max, stall, text.String())
			}
			for _, l := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
				want := rate * (stall - l).Seconds()
				got := float64(res.Hist.countAtOrAbove(uint64(l)))
				// At least 85 % of the messages scheduled in the stall's first (stall - l) (less
				// the one bucket countAtOrAbove may leave out), and not more than the run's lag
				// could plausibly add.
				if got < 0.85*want-2 || got > want+rate*stall.Seconds() {
					t.Errorf("%.0f messages with latency >= %s, want about %.0f (rate × (stall - %s))\n%s",
						got, l, want, l, text.String())
				}
			}
		})
	}
}

// TestRateStampRule checks the stamp a paced publisher writes: the scheduled time, or the time
// it woke from waiting for the schedule when that is later; as fast as possible, the time of
// writing.
func TestRateStampRule(t *testing.T) {
	stampOf := func(p *publisher) int64 {
		st, ok := readStamp(p.payload)
		if !ok {
			t.Fatal("no stamp")
		}
		p.buf = p.buf[:0]
		return st.sentNs
	}
	p := testPublisher(t, 0, packet.V311)
	p.rate = 1000
	p.appendOne(5, 0)
	if got := stampOf(p); got != int64(5*time.Millisecond) {
		t.Fatalf("message 5 at 1000/s stamped %d ns, want its schedule, 5 ms", got)
	}
	p.wokeNs = int64(7 * time.Millisecond) // overslept: message 5 fell due while it slept
	p.appendOne(5, 0)
	if got := stampOf(p); got != p.wokeNs {
		t.Fatalf("stamped %d ns, want the wake-up time %d", got, p.wokeNs)
	}
	p.appendOne(9, 0) // due after the wake-up: held up by the broker, not by the tool
	if got := stampOf(p); got != int64(9*time.Millisecond) {
		t.Fatalf("message 9 stamped %d ns, want its schedule, 9 ms", got)
	}

	p = testPublisher(t, 0, packet.V311)
	p.t0 = time.Now().Add(-time.Hour)
	before := p.now()
	p.appendOne(5, 0)
	if got := stampOf(p); got < before || got > p.now() {
		t.Fatalf("as fast as possible: stamped %d ns, want the time of writing (after %d)", got, before)
	}
}
