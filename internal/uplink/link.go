package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/mqttclient"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/store"
)

// Config is one link's setup.
type Config struct {
	config.Uplink
	// RouterID is this router's id (tern-origin, and the end of its client id upstream).
	RouterID string
	// MaxPacketSize is the largest packet this router takes, announced to the designated router.
	MaxPacketSize int
	// ConnectTimeout bounds the dial, the TLS handshake and the wait for CONNACK (default 10 s).
	ConnectTimeout time.Duration
}

// Link is one [[route.uplink]]: a trunk session in the core whose deliveries go up, and one
// session at the designated router through which the site's interest comes down.
type Link struct {
	cfg       Config
	b         *broker.Broker
	rec       store.Records
	log       *slog.Logger
	ep        mqttclient.Endpoint
	dialOpts  mqttclient.Options
	upID      string // the session's client id at the designated router
	trunkID   string
	principal *auth.Principal
	// out is what the link's connections share: their limits, upStats, writeBufs.
	out   netio.Shared
	stats Stats
	warn  warnings

	// interest is signalled (never blocking) when the site's subscriptions change.
	interest chan struct{}
	stop     chan struct{}
	done     chan struct{}
	started  bool

	mu       sync.Mutex
	stopping bool
	cur      *session
	since    time.Time
	lastErr  string
	// upstream are the filters the designated router holds for this site, as far as its
	// acknowledgements told (kept in the store, so a restart can drop those no longer wanted).
	upstream map[string]bool
}

// newLink checks the setup and reads what the link keeps in the store.
func newLink(b *broker.Broker, rec store.Records, cfg Config, log *slog.Logger) (*Link, error) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	ep, err := mqttclient.Parse(cfg.URL)
	if err != nil {
		return nil, err
	}
	identity := cfg.Identity
	if identity == "" {
		if identity, err = certIdentity(cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, err
		}
	}
	l := &Link{
		cfg: cfg, b: b, rec: rec, log: log.With("uplink", cfg.Name), ep: ep,
		dialOpts: mqttclient.Options{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile,
			ServerName: cfg.ServerName, Timeout: cfg.ConnectTimeout},
		upID:      broker.PeerClientPrefix(identity) + cfg.RouterID,
		trunkID:   config.TrunkClientID(cfg.Name),
		principal: auth.Unrestricted(config.TrunkClientID(cfg.Name)),
		interest:  make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		upstream:  map[string]bool{},
	}
	// Writes wait at most a keep alive; a buffer that refuses QoS 0 at 1 MiB; the QoS 1/2 window
	// bounds the rest.
	l.out = netio.Shared{Lim: netio.Limits{Soft: 1 << 20, WriteTimeout: max(10*time.Second, cfg.KeepAlive), Linger: time.Second},
		Stats: &upStats, Pool: writeBufs}
	l.warn.every = time.Minute
	if _, err := l.loadTLS(); err != nil {
		return nil, err
	}
	var subs []string
	if err := l.load("subs", &subs); err != nil {
		return nil, err
	}
	for _, f := range subs {
		l.upstream[f] = true
	}
	return l, nil
}

// loadTLS checks that the certificate files can be read, so a mistake shows at start.
func (l *Link) loadTLS() (*tls.Certificate, error) {
	kp, err := tls.LoadX509KeyPair(l.cfg.CertFile, l.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("uplink %s: client certificate: %w", l.cfg.Name, err)
	}
	return &kp, nil
}

// certIdentity is what a designated router takes a certificate to name by default: its subject
// CN, lower-cased.
func certIdentity(certFile, keyFile string) (string, error) {
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return "", fmt.Errorf("client certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		return "", fmt.Errorf("client certificate: %w", err)
	}
	cn := strings.ToLower(leaf.Subject.CommonName)
	if cn == "" {
		return "", errors.New("client certificate has no subject CN: set the uplink's identity")
	}
	return cn, nil
}

// prepare connects the trunk session before any client can publish, so that it exists,
// subscribes and numbers what it takes, and leaves it offline: until the link is up, what it
// takes queues on disk.
func (l *Link) prepare() error {
	c, res, err := l.b.Connect(context.Background(), broker.ConnectRequest{ClientID: l.trunkID, Principal: l.principal,
		Expiry: broker.NeverExpire, Sequenced: true, Sink: idleSink{}})
	if err != nil {
		return fmt.Errorf("uplink %s: trunk session: %w", l.cfg.Name, err)
	}
	defer c.Disconnect(broker.DisconnectRequest{Graceful: true})
	if !res.SessionPresent {
		// A new trunk numbers from 1 again: the designated router must forget what it took from
		// the old one, so the first connection starts its session afresh.
		if err := l.save("fresh", true); err != nil {
			return err
		}
	}
	var before []string
	if err := l.load("namespaces", &before); err != nil {
		return err
	}
	var gone []string
	for _, ns := range before {
		if !slices.Contains(l.cfg.Namespaces, ns) {
			gone = append(gone, ns+"/#")
		}
	}
	if len(gone) > 0 {
		c.Unsubscribe(gone)
	}
	reqs := make([]broker.SubscribeRequest, 0, len(l.cfg.Namespaces))
	for _, ns := range l.cfg.Namespaces {
		// No Local: what this session publishes (what came down) never goes back up. Retained
		// messages already here are not forwarded; new ones are, with their flag.
		reqs = append(reqs, broker.SubscribeRequest{Filter: ns + "/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2})
	}
	for i, r := range c.Subscribe(reqs) {
		if r.Err != nil {
			return fmt.Errorf("uplink %s: trunk subscription %s: %w", l.cfg.Name, reqs[i].Filter, r.Err)
		}
	}
	return l.save("namespaces", l.cfg.Namespaces)
}

// load and save keep the link's small records as JSON.
func (l *Link) load(key string, v any) error {
	raw, ok, err := l.rec.Get(recordsNS, l.cfg.Name+"/"+key)
	if err != nil || !ok {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		l.log.Warn("uplink record unreadable, ignored", "key", key, "err", err)
	}
	return nil
}

func (l *Link) save(key string, v any) error {
	raw, _ := json.Marshal(v)
	if err := l.rec.Put(recordsNS, l.cfg.Name+"/"+key, raw); err != nil {
		return fmt.Errorf("uplink %s: %w", l.cfg.Name, err)
	}
	return nil
}

func (l *Link) forget(key string) error { return l.rec.Delete(recordsNS, l.cfg.Name+"/"+key) }

// run keeps the link up until Close.
func (l *Link) run() {
	defer close(l.done)
	attempt := 0
	for {
		if l.connectOnce() {
			attempt = 0
		}
		attempt++
		wait := backoff(attempt, l.cfg.ReconnectMax)
		t := time.NewTimer(wait)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff is the wait before attempt n (1-based): a quarter second doubled per failure, up to
// max, times a random factor in [0.5, 1) so that many sites do not reconnect in step.
func backoff(n int, maxWait time.Duration) time.Duration {
	d := 250 * time.Millisecond << min(n-1, 20)
	if d <= 0 || d > maxWait {
		d = maxWait
	}
	return time.Duration(float64(d) * (0.5 + rand.Float64()/2))
}

// failed records why the link could not come up.
func (l *Link) failed(err error) {
	l.stats.Failures.Add(1)
	l.mu.Lock()
	l.lastErr = err.Error()
	l.mu.Unlock()
	if l.warn.due("connect") {
		l.log.Warn("uplink cannot connect; retrying", "url", l.cfg.URL, "err", err)
	}
}

// connectOnce connects, runs the link until the connection ends, and reports whether it came up.
func (l *Link) connectOnce() bool {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.ConnectTimeout)
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := dial(ctx, l.ep, l.dialOpts, &l.out)
	if err != nil {
		l.failed(err)
		return false
	}
	var fresh bool
	_ = l.load("fresh", &fresh)
	ka := l.cfg.KeepAlive
	connect := &packet.Connect{ClientID: []byte(l.upID), CleanStart: fresh, KeepAlive: uint16(ka / time.Second)}
	pr := &connect.Props
	pr.SessionExpiry = uint32(l.cfg.SessionExpiry / time.Second)
	pr.Set(packet.PropSessionExpiry)
	pr.ReceiveMax = uint16(l.cfg.Inflight)
	pr.Set(packet.PropReceiveMax)
	if l.cfg.MaxPacketSize > 0 {
		pr.MaxPacketSize = uint32(l.cfg.MaxPacketSize)
		pr.Set(packet.PropMaxPacketSize)
	}
	ack, err := c.handshake(connect, l.cfg.ConnectTimeout)
	if err == nil && ack.Props.Has(packet.PropMaxQoS) && ack.Props.MaxQoS == 0 {
		err = errors.New("the designated router takes QoS 0 only")
	}
	if err != nil {
		c.closeNow()
		l.failed(err)
		return false
	}
	if ack.Props.Has(packet.PropServerKeepAlive) && ack.Props.ServerKeepAlive > 0 {
		ka = time.Duration(ack.Props.ServerKeepAlive) * time.Second
	}
	window := l.cfg.Inflight
	if ack.Props.Has(packet.PropReceiveMax) {
		window = min(window, int(ack.Props.ReceiveMax))
	}
	maxPacket := 0
	if ack.Props.Has(packet.PropMaxPacketSize) {
		maxPacket = int(min(ack.Props.MaxPacketSize, 1<<30))
	}
	k := newSink(c, l.cfg.RouterID, window, maxPacket, l.cfg.DrainRate, &l.stats)
	c.room = k.room
	trunk, _, err := l.b.Connect(context.Background(), broker.ConnectRequest{ClientID: l.trunkID, Principal: l.principal,
		Expiry: broker.NeverExpire, Sequenced: true, ReceiveMax: uint16(window), Sink: k})
	if err != nil {
		c.closeNow()
		l.failed(fmt.Errorf("trunk session: %w", err))
		return false
	}
	k.trunk = trunk
	s := newSession(l, c, trunk, k, ka)
	if err := s.begin(fresh, ack.SessionPresent); err != nil {
		s.end(err)
		return true
	}
	s.end(s.read())
	return true
}

// announce publishes a server event ($SYS/events/uplink/up or down).
func (l *Link) announce(kind string, fields map[string]any) {
	fields["uplink"] = l.cfg.Name
	payload, _ := json.Marshal(fields)
	m := &message.Message{Topic: broker.EventsPrefix + "uplink/" + kind, Payload: payload}
	m.Props.ContentType = "application/json"
	if _, err := l.b.PublishAs(auth.Unrestricted(""), auth.Publish, m); err != nil && l.warn.due("event") {
		l.log.Warn("uplink event not published", "event", kind, "err", err)
	}
}

// start runs the link.
func (l *Link) start() {
	l.started = true
	l.b.WatchInterest(func() {
		select {
		case l.interest <- struct{}{}:
		default:
		}
	})
	go l.run()
}

// close stops the link: the connection ends and the trunk goes offline, keeping its queue.
func (l *Link) close() {
	l.mu.Lock()
	if l.stopping {
		l.mu.Unlock()
		return
	}
	l.stopping = true
	close(l.stop)
	s := l.cur
	l.mu.Unlock()
	if s != nil {
		s.c.closeNow()
	}
	if l.started {
		<-l.done
	}
}

// idleSink is the trunk's connection while the link is down: the session is never started on it,
// so nothing is sent to it.
type idleSink struct{}

func (idleSink) Send(broker.Delivery) broker.SendResult { return broker.Busy }
func (idleSink) Release(uint16)                         {}
func (idleSink) Close(error)                            {}
func (idleSink) Drained() <-chan struct{}               { return closedCh }

// warnings rate-limits the link's warnings per cause.
type warnings struct {
	mu    sync.Mutex
	every time.Duration
	last  map[string]time.Time
}

func (w *warnings) due(cause string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if t, ok := w.last[cause]; ok && now.Sub(t) < w.every {
		return false
	}
	if w.last == nil {
		w.last = map[string]time.Time{}
	}
	w.last[cause] = now
	return true
}
