// Package bench is the load engine of `tern bench`. It speaks MQTT 3.1.1 or 5 with tern's own
// codec (internal/mqtt/packet), so it measures tern, Mosquitto and the MQTT port of nats-server
// alike: publishers stamp every payload with a send time, publisher and sequence number;
// subscribers count what arrives (lost, duplicated) and record each message's latency in an
// HDR histogram. The client is built not to be the bottleneck: batched,
// pipelined writes, one large read buffer per subscriber, batched acknowledgements and no
// allocation per message.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// Config describes one run.
type Config struct {
	// URL of the broker: mqtt://host:port, unix:///path, or mqtts:// (see mqttclient).
	URL      string
	CAFile   string
	Insecure bool
	// Dial, when set, replaces URL (tests, the in-process reflector).
	Dial func(ctx context.Context) (net.Conn, error)

	// MQTTVersion is "3.1.1" (default) or "5".
	MQTTVersion string
	Publishers  int
	Subscribers int
	// Size is the payload size in bytes, at least MinSize.
	Size int
	QoS  byte
	// Count is the number of measured messages per publisher; 0 means until Duration.
	Count int
	// Duration bounds the publishing; the run also ends by then (plus Drain) if messages are lost.
	Duration time.Duration
	// Rate is messages per second per publisher; 0 publishes as fast as possible.
	Rate float64
	// Topic is the base: publisher i publishes to Topic/i, subscribers subscribe to Topic/#.
	Topic string
	// Shared makes subscribers share one subscription, $share/bench/Topic/#.
	Shared bool
	// Warmup messages per publisher are sent first and left out of every figure.
	Warmup int
	// Drain is how long subscribers wait for missing messages once publishing has ended and
	// nothing arrives any more (default 2s).
	Drain time.Duration
	// Inflight caps the QoS 1/2 window per publisher (default 64 for 3.1.1; for 5 the broker's
	// Receive Maximum). It never exceeds the broker's Receive Maximum.
	Inflight int
	// BatchBytes is how many bytes a publisher encodes before writing (default 32 KiB).
	BatchBytes     int
	ConnectTimeout time.Duration
	// ClientPrefix starts every client identifier (default "tern-bench"). Subscriber i is
	// <ClientPrefix>-<run id>-s<i> and publisher i <ClientPrefix>-<run id>-p<i>.
	ClientPrefix string

	// Persistent gives the subscribers persistent sessions under their fixed client
	// identifiers: Clean Session 0 in 3.1.1; Clean Start 0 with a Session Expiry Interval of
	// SessionExpiry in 5. A broker with a durable store then keeps their subscriptions and
	// queues on disk. When the run ends the sessions are removed (each subscriber's client
	// identifier reconnects with a clean session and disconnects), unless KeepSessions.
	Persistent bool
	// SessionExpiry is the v5 Session Expiry Interval of persistent sessions, in seconds
	// (default 3600).
	SessionExpiry uint32
	// KeepSessions leaves the persistent sessions in the broker after the run.
	KeepSessions bool
	// RunID identifies the run in every payload stamp and client identifier; 0 picks a random
	// one. Invocations that share it share persistent sessions and messages: Subscribe leaves
	// the sessions, a Run with no subscribers fills their queues, Drain empties them.
	RunID uint32
}

func (c *Config) version() packet.Version {
	if c.MQTTVersion == "5" || c.MQTTVersion == "5.0" {
		return packet.V5
	}
	return packet.V311
}

// normalize fills defaults and checks the configuration.
func (c *Config) normalize() error {
	switch c.MQTTVersion {
	case "", "3.1.1", "311", "4":
		c.MQTTVersion = "3.1.1"
	case "5", "5.0":
		c.MQTTVersion = "5"
	default:
		return fmt.Errorf("MQTT version %q: use 3.1.1 or 5", c.MQTTVersion)
	}
	if c.Publishers < 1 {
		return errors.New("at least one publisher is needed")
	}
	if c.Subscribers < 0 {
		return errors.New("the number of subscribers cannot be negative")
	}
	if c.Size == 0 {
		c.Size = 128
	}
	if c.Size < MinSize {
		return fmt.Errorf("size %d: the payload must hold the %d-byte stamp", c.Size, MinSize)
	}
	if c.QoS > 2 {
		return fmt.Errorf("QoS %d: must be 0, 1 or 2", c.QoS)
	}
	if c.Count < 0 || c.Warmup < 0 || c.Rate < 0 || c.Inflight < 0 {
		return errors.New("count, warmup, rate and inflight cannot be negative")
	}
	if c.Duration <= 0 {
		return errors.New("a duration bound is required")
	}
	if c.Topic == "" {
		c.Topic = "bench"
	}
	if c.Drain <= 0 {
		c.Drain = 2 * time.Second
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 32 << 10
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.ClientPrefix == "" {
		c.ClientPrefix = "tern-bench"
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = 3600
	}
	for c.RunID == 0 {
		c.RunID = newRunID()
	}
	return nil
}

// clientID is the client identifier of subscriber ("s") or publisher ("p") i of the run.
func (c *Config) clientID(role string, i int) string {
	return fmt.Sprintf("%s-%08x-%s%d", c.ClientPrefix, c.RunID, role, i)
}

// subscriberIDs are the client identifiers of the run's subscribers.
func (c *Config) subscriberIDs() []string {
	ids := make([]string, c.Subscribers)
	for i := range ids {
		ids[i] = c.clientID("s", i)
	}
	return ids
}

// subscriberSession is how subscribers treat their sessions.
func (c *Config) subscriberSession() session {
	if !c.Persistent {
		return session{}
	}
	return session{persistent: true, expiry: c.SessionExpiry}
}

// filter is what every subscriber subscribes to.
func (c *Config) filter() string {
	if c.Shared {
		return "$share/bench/" + c.Topic + "/#"
	}
	return c.Topic + "/#"
}

// Result is what a run measured. Latencies are in microseconds.
type Result struct {
	URL         string  `json:"url"`
	MQTTVersion string  `json:"mqtt_version"`
	QoS         byte    `json:"qos"`
	Publishers  int     `json:"publishers"`
	Subscribers int     `json:"subscribers"`
	Shared      bool    `json:"shared"`
	Size        int     `json:"size"`
	Rate        float64 `json:"rate_per_publisher,omitempty"`
	// RunID is the run identifier (hex) in the stamps and client identifiers.
	RunID string `json:"run_id"`
	// Persistent says the subscribers had persistent sessions.
	Persistent bool `json:"persistent,omitempty"`
	// Phase is "drain" for what Drain measured, and empty for a whole run.
	Phase string `json:"phase,omitempty"`

	Sent       uint64 `json:"sent"`
	Expected   uint64 `json:"expected"`
	Delivered  uint64 `json:"delivered"`
	Lost       uint64 `json:"lost"`
	Duplicates uint64 `json:"duplicates"`
	// Foreign counts messages that were not this run's (another run's, or malformed).
	Foreign uint64 `json:"foreign,omitempty"`
	// Acked and Refused count QoS 1/2 acknowledgements; Unacked what got neither by the end.
	Acked   uint64 `json:"acked,omitempty"`
	Refused uint64 `json:"refused,omitempty"`
	Unacked uint64 `json:"unacked,omitempty"`
	// NoSubscribers counts v5 acknowledgements saying "no matching subscribers".
	NoSubscribers uint64 `json:"no_subscribers,omitempty"`
	Window        int    `json:"inflight_window,omitempty"`

	ElapsedSeconds        float64 `json:"elapsed_s"`
	PublishElapsedSeconds float64 `json:"publish_elapsed_s"`
	PublishRate           float64 `json:"publish_msgs_per_s"`
	DeliverRate           float64 `json:"delivered_msgs_per_s"`

	Latency Latency `json:"latency_us"`
	// LatencyFrom says where each latency starts: "schedule" at a fixed rate (the time the
	// message was due, so time the broker held the publisher up counts: corrected for
	// coordinated omission), "write" as fast as possible (no schedule: the time it was written).
	LatencyFrom string `json:"latency_from,omitempty"`
	// ClientCPUSeconds is the CPU time this process spent from the start of publishing to the
	// end of the run (publishers and subscribers; and the reflector, when it runs in-process).
	// Deliveries / ClientCPUSeconds is what the load tool could sustain per core.
	ClientCPUSeconds float64 `json:"client_cpu_s"`
	// Errors lists what went wrong on connections during the run (not lost messages).
	Errors []string `json:"errors,omitempty"`

	Hist *Histogram `json:"-"`
}

// Latency holds latency percentiles in microseconds. Min, Mean and Max are exact; a percentile
// is never below the true value and at most 1/128 above it (see Histogram).
type Latency struct {
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	P9999 float64 `json:"p99_99"`
	Max   float64 `json:"max"`
}

func latencyOf(h *Histogram) Latency {
	us := func(ns uint64) float64 { return float64(ns) / 1e3 }
	return Latency{Min: us(h.Min()), Mean: h.Mean() / 1e3, P50: us(h.Percentile(0.50)),
		P90: us(h.Percentile(0.90)), P99: us(h.Percentile(0.99)), P999: us(h.Percentile(0.999)),
		P9999: us(h.Percentile(0.9999)), Max: us(h.Max())}
}

func newRunID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// connectAll opens n connections, up to 32 at a time.
func connectAll(ctx context.Context, n int, open func(ctx context.Context, i int) error) error {
	sem := make(chan struct{}, 32)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := open(ctx, i); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	return <-errs // the first error, or nil
}

// Run performs one bounded run: it connects, publishes until Count or Duration, waits for the
// deliveries (at most Drain after they stop coming), and reports. It returns an error only when
// the run could not start; trouble during the run is in Result.Errors.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	d, err := newDialer(&cfg)
	if err != nil {
		return nil, err
	}
	run := cfg.RunID

	// Subscribers first, each subscribed before anything is published.
	subConns := make([]*mqttConn, cfg.Subscribers)
	pubConns := make([]*mqttConn, cfg.Publishers)
	// closeAll disconnects everyone and then removes the persistent sessions it should; it
	// runs once, and returns what went wrong removing sessions.
	var closed bool
	closeAll := func() []string {
		if closed {
			return nil
		}
		closed = true
		disconnectAll(subConns)
		disconnectAll(pubConns)
		if cfg.Persistent && !cfg.KeepSessions {
			return removeSessions(ctx, d, cfg.subscriberIDs())
		}
		return nil
	}
	err = connectAll(ctx, cfg.Subscribers, func(ctx context.Context, i int) error {
		c, err := d.connect(ctx, cfg.clientID("s", i), 256<<10, cfg.subscriberSession())
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		subConns[i] = c
		if _, err := c.subscribe(cfg.filter(), cfg.QoS, time.Now().Add(cfg.ConnectTimeout)); err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		return nil
	})
	if err == nil {
		err = connectAll(ctx, cfg.Publishers, func(ctx context.Context, i int) error {
			c, err := d.connect(ctx, cfg.clientID("p", i), 64<<10, session{})
			if err != nil {
				return fmt.Errorf("publisher %d: %w", i, err)
			}
			pubConns[i] = c
			return nil
		})
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	defer closeAll()

	cpu0 := processCPU()
	t0 := time.Now()
	pubDeadline := t0.Add(cfg.Duration)
	hardStop := pubDeadline.Add(cfg.Drain)
	stopPub := make(chan struct{})
	var stopPubOnce sync.Once
	endPublishing := func() { stopPubOnce.Do(func() { close(stopPub) }) }
	pubTimer := time.AfterFunc(cfg.Duration, endPublishing)
	defer pubTimer.Stop()

	pubs := make([]*publisher, cfg.Publishers)
	for i, c := range pubConns {
		p, err := newPublisher(uint32(i), run, c, &cfg, t0, stopPub)
		if err != nil {
			return nil, err
		}
		pubs[i] = p
	}
	subs := make([]*subscriber, cfg.Subscribers)
	for i, c := range subConns {
		subs[i] = newSubscriber(i, run, c, cfg.Publishers, uint64(cfg.Count), t0)
	}

	var ending atomic.Bool // set once the coordinator cuts the connections
	stopping := func() bool { return ending.Load() }
	var wg sync.WaitGroup
	for _, s := range subs {
		_ = s.c.nc.SetDeadline(hardStop)
		wg.Add(1)
		go func() { defer wg.Done(); s.read(stopping) }()
	}
	var pubsDone sync.WaitGroup
	allAcked := make(chan struct{})
	var ackWG sync.WaitGroup
	for _, p := range pubs {
		_ = p.c.nc.SetWriteDeadline(pubDeadline)
		_ = p.c.nc.SetReadDeadline(hardStop)
		wg.Add(1)
		go func() { defer wg.Done(); p.readAcks() }()
		pubsDone.Add(1)
		ackWG.Add(1)
		go func() {
			defer ackWG.Done()
			p.publish(pubsDone.Done)
			p.waitAcks(allAcked)
		}()
	}

	// Wait for the publishers, or for the caller to give up.
	waitCh := make(chan struct{})
	go func() { pubsDone.Wait(); close(waitCh) }()
	select {
	case <-waitCh:
	case <-ctx.Done():
		endPublishing()
		<-waitCh
	}
	pubEnd := time.Now()
	var sent uint64
	for _, p := range pubs {
		sent += p.sent()
	}
	expected := sent * uint64(cfg.Subscribers)
	if cfg.Shared && cfg.Subscribers > 0 {
		expected = sent
	}

	// Wait for the deliveries: all expected, or nothing new for Drain, or the hard stop.
	tick := time.NewTicker(time.Millisecond)
	lastProgress, lastChange := uint64(0), pubEnd
	for expected > 0 {
		var got uint64
		for _, s := range subs {
			got += s.progress.Load()
		}
		now := time.Now()
		if got != lastProgress {
			lastProgress, lastChange = got, now
		}
		if got >= expected || now.After(hardStop) || now.Sub(lastChange) > cfg.Drain || ctx.Err() != nil {
			break
		}
		<-tick.C
	}
	tick.Stop()
	// Give QoS 1/2 acknowledgements a moment (bounded) to come back, then stop everything.
	ackDone := make(chan struct{})
	go func() { ackWG.Wait(); close(ackDone) }()
	select {
	case <-ackDone:
	case <-time.After(min(cfg.Drain, time.Until(hardStop.Add(time.Second)))):
	}
	ending.Store(true)
	endPublishing()
	close(allAcked)
	now := time.Now()
	for _, c := range append(subConns, pubConns...) {
		_ = c.nc.SetDeadline(now)
	}
	wg.Wait()
	<-ackDone

	res := collect(&cfg, pubs, subs, sent, expected)
	res.ClientCPUSeconds = (processCPU() - cpu0).Seconds()
	res.Errors = append(res.Errors, closeAll()...)
	return res, nil
}

// collect merges the publishers' and subscribers' counts into a Result.
func collect(cfg *Config, pubs []*publisher, subs []*subscriber, sent, expected uint64) *Result {
	r := newResult(cfg)
	r.Sent, r.Expected = sent, expected
	firstNs, lastPubNs, lastDelNs := int64(-1), int64(0), int64(0)
	for _, p := range pubs {
		if p.firstNs >= 0 && (firstNs < 0 || p.firstNs < firstNs) {
			firstNs = p.firstNs
		}
		lastPubNs = max(lastPubNs, p.lastNs)
		// Acknowledgements of warm-up messages are not counted.
		r.Acked += p.acked.Load() - min(p.acked.Load(), min(p.written, p.warm))
		r.Refused += p.refused.Load()
		r.NoSubscribers += p.noSubs.Load()
		r.Window = max(r.Window, p.window)
		if p.writeErr != nil && p.writeErr != errStopped {
			r.Errors = append(r.Errors, fmt.Sprintf("publisher %d: %v", p.idx, p.writeErr))
		}
		if p.readErr != nil && !isEndOfRun(p.readErr) {
			r.Errors = append(r.Errors, fmt.Sprintf("publisher %d: %v", p.idx, p.readErr))
		}
		if done := p.acked.Load() + p.refused.Load(); cfg.QoS > 0 && p.written > done {
			r.Unacked += p.written - done
		}
	}
	for _, s := range subs {
		r.Hist.Merge(s.hist)
		r.Duplicates += s.dups
		r.Foreign += s.foreign
		lastDelNs = max(lastDelNs, s.lastNs.Load())
		if s.err != nil {
			r.Errors = append(r.Errors, s.err.Error())
		}
	}
	for pi, p := range pubs {
		ps := p.sent()
		if cfg.Shared {
			// A message counts once whichever subscriber got it; a copy at a second one is a
			// duplicate.
			var union []uint64
			var total uint64
			for _, s := range subs {
				total += s.receivedFrom(pi)
				set := s.seen[pi]
				if len(set) > len(union) {
					union = append(union, make([]uint64, len(set)-len(union))...)
				}
				for w, b := range set {
					union[w] |= b
				}
			}
			u := popcount(union)
			r.Delivered += u
			r.Duplicates += total - u
			if ps > u {
				r.Lost += ps - u
			}
			continue
		}
		for _, s := range subs {
			u := s.receivedFrom(pi)
			r.Delivered += u
			if ps > u {
				r.Lost += ps - u
			}
		}
	}
	if firstNs >= 0 {
		if lastPubNs > firstNs {
			r.PublishElapsedSeconds = float64(lastPubNs-firstNs) / 1e9
			r.PublishRate = float64(sent) / r.PublishElapsedSeconds
		}
		if lastDelNs > firstNs {
			r.ElapsedSeconds = float64(lastDelNs-firstNs) / 1e9
			r.DeliverRate = float64(r.Delivered) / r.ElapsedSeconds
		} else {
			r.ElapsedSeconds = r.PublishElapsedSeconds
		}
	}
	r.Latency = latencyOf(r.Hist)
	r.LatencyFrom = "write"
	if cfg.Rate > 0 {
		r.LatencyFrom = "schedule"
	}
	return r
}

// newResult is a Result describing cfg, with no figures yet.
func newResult(cfg *Config) *Result {
	r := &Result{URL: cfg.URL, MQTTVersion: cfg.MQTTVersion, QoS: cfg.QoS, Publishers: cfg.Publishers,
		Subscribers: cfg.Subscribers, Shared: cfg.Shared, Size: cfg.Size, Rate: cfg.Rate,
		RunID: fmt.Sprintf("%08x", cfg.RunID), Persistent: cfg.Persistent, Hist: new(Histogram)}
	if cfg.Dial != nil && r.URL == "" {
		r.URL = "(custom dialer)"
	}
	return r
}

func popcount(set []uint64) uint64 {
	var n uint64
	for _, w := range set {
		n += uint64(bits.OnesCount64(w))
	}
	return n
}

// isEndOfRun reports read errors caused by the coordinator's deadline.
func isEndOfRun(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
