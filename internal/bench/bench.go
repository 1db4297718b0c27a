// Package bench is the load engine of `tern bench`. It speaks MQTT 3.1.1 or 5 with tern's own
// codec (internal/mqtt/packet), so it measures tern, Mosquitto and the MQTT port of nats-server
// alike: publishers stamp every payload with a send time (at a fixed rate, the time it was
// scheduled), publisher and sequence number; subscribers count what arrives (lost, duplicated)
// and record each message's latency in an HDR histogram. The client is built not to be the
// bottleneck: batched, pipelined writes, one large read buffer per subscriber, batched
// acknowledgements and no allocation per message.
//
// Files: bench.go the configuration; run.go a run's phases (connect, start, publish, wait for
// the deliveries, stop); result.go what a run measured; report.go its text; publisher.go,
// subscriber.go and conn.go the clients; persistent.go and idle.go the other modes.
package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// Config describes one run.
type Config struct {
	// URL of the broker: mqtt://host:port, unix:///path, or mqtts:// (see mqttclient).
	URL      string
	CAFile   string
	Insecure bool
	// TLSResume makes mqtts:// connections share a TLS session cache, so that all but the first
	// connection (per ticket the server issues) resume instead of doing a full handshake.
	TLSResume bool
	// TLSGroups, when set, are the only TLS key exchanges mqtts:// connections offer (brokers
	// built on older TLS libraries cannot negotiate Go's default post-quantum hybrid, so a
	// comparison of handshakes offers them all the same one).
	TLSGroups []tls.CurveID
	// SubscriberURL, when set, is where the subscribers connect instead of URL: another node
	// of a cluster, to measure delivery across nodes.
	SubscriberURL string
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

func newRunID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// connectAll opens n connections, up to 32 at a time.
func connectAll(ctx context.Context, n int, open func(ctx context.Context, i int) error) error {
	return connectAllN(ctx, n, 32, open)
}

// connectAllN is connectAll with at most conc connections being opened at once.
func connectAllN(ctx context.Context, n, conc int, open func(ctx context.Context, i int) error) error {
	sem := make(chan struct{}, max(conc, 1))
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

// isEndOfRun reports read errors caused by the coordinator's deadline.
func isEndOfRun(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
