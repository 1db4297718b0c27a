package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/memstore"
)

// These tests restart the core on the same store. A memory store keeps everything a disk store
// would, so they test the core's recovery; the disk store's own suite tests that it keeps it.

func newBrokerOn(t *testing.T, st store.Store, mod func(*Config)) (*Broker, *clock.Fake) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SweepInterval = 0 // tests sweep by hand
	fake := clock.NewFake(testEpoch)
	cfg.Clock = fake
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, fake
}

const hour = 3600

func TestRestartResumesSessionSubscriptionsAndQueue(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "sub", Expiry: hour})
	subscribe(t, c, SubscribeRequest{Filter: "a/#", QoS: 1, ID: 4})
	c.Disconnect(DisconnectRequest{Graceful: true})
	pub, _, _ := connect(t, b1, ConnectRequest{ClientID: "pub"})
	for _, p := range []string{"1", "2", "3"} {
		publish(t, pub, "a/b", p, 1, false)
	}
	_ = b1.Close()

	b2, _ := newBrokerOn(t, st, nil)
	if got := b2.Stats().Queued.Load(); got != 3 {
		t.Fatalf("queued after restart = %d, want 3", got)
	}
	c2, k, res := connect(t, b2, ConnectRequest{ClientID: "sub", Expiry: hour})
	if !res.SessionPresent {
		t.Fatal("session not present after restart")
	}
	wantPayloads(t, k, "1", "2", "3")
	if d := k.deliveries()[0]; d.QoS != 1 || len(d.SubIDs) != 1 || d.SubIDs[0] != 4 {
		t.Fatalf("delivery %+v lost its QoS or subscription id", d)
	}
	pub2, _, _ := connect(t, b2, ConnectRequest{ClientID: "pub"})
	publish(t, pub2, "a/c", "4", 1, false)
	wantPayloads(t, k, "1", "2", "3", "4")
	_ = c2
}

func TestCrashRedeliversInflightWithDupAndResendsReleases(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	c, k, _ := connect(t, b1, ConnectRequest{ClientID: "sub", Expiry: hour})
	subscribe(t, c, SubscribeRequest{Filter: "t", QoS: 2})
	pub, _, _ := connect(t, b1, ConnectRequest{ClientID: "pub"})
	publish(t, pub, "t", "q1", 1, false)
	publish(t, pub, "t", "q2", 2, false)
	publish(t, pub, "t", "acked", 1, false)
	d := k.deliveries()
	if len(d) != 3 {
		t.Fatalf("%d deliveries before the crash", len(d))
	}
	c.Received(d[1].PacketID) // PUBREC for q2: only PUBCOMP is missing
	c.Acked(d[2].PacketID)
	// No Close: the process "dies" here.

	b2, _ := newBrokerOn(t, st, nil)
	_, k2, _ := connect(t, b2, ConnectRequest{ClientID: "sub", Expiry: hour})
	got := k2.deliveries()
	if len(got) != 1 || string(got[0].Msg.Payload) != "q1" || !got[0].Dup || got[0].PacketID != d[0].PacketID {
		t.Fatalf("redelivered %+v, want q1 with DUP and packet id %d", got, d[0].PacketID)
	}
	k2.mu.Lock()
	rel := k2.releases
	k2.mu.Unlock()
	if len(rel) != 1 || rel[0] != d[1].PacketID {
		t.Fatalf("releases resent %v, want [%d]", rel, d[1].PacketID)
	}
}

func TestCrashKeepsExactlyOnceReceipts(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	obs, k, _ := connect(t, b1, ConnectRequest{ClientID: "obs", Expiry: hour})
	subscribe(t, obs, SubscribeRequest{Filter: "x", QoS: 0})
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "pub", Expiry: hour})
	if _, err := c.PublishExactlyOnce(7, &message.Message{Topic: "x", Payload: []byte("once"), QoS: 2}); err != nil {
		t.Fatal(err)
	}
	wantPayloads(t, k, "once")

	b2, _ := newBrokerOn(t, st, nil)
	c2, _, _ := connect(t, b2, ConnectRequest{ClientID: "pub", Expiry: hour})
	res, err := c2.PublishExactlyOnce(7, &message.Message{Topic: "x", Payload: []byte("once"), QoS: 2})
	if err != nil || !res.Duplicate {
		t.Fatalf("resent exactly-once publish after restart: %+v %v, want duplicate", res, err)
	}
	if !c2.Release(7) || c2.Release(7) {
		t.Fatal("release after restart did not complete exactly once")
	}
}

func TestRestartKeepsDelayedWill(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	w, _, _ := connect(t, b1, ConnectRequest{ClientID: "watch", Expiry: hour})
	subscribe(t, w, SubscribeRequest{Filter: "will/#", QoS: 1})
	w.Disconnect(DisconnectRequest{Graceful: true})
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "dev", Expiry: hour,
		Will: &Will{Msg: &message.Message{Topic: "will/dev", Payload: []byte("gone"), QoS: 1}, Delay: 60}})
	c.Disconnect(DisconnectRequest{})

	b2, clk := newBrokerOn(t, st, nil)
	_, k, _ := connect(t, b2, ConnectRequest{ClientID: "watch", Expiry: hour})
	clk.Advance(59 * time.Second)
	wantPayloads(t, k)
	clk.Advance(time.Second)
	wantPayloads(t, k, "gone")
}

func TestCrashWhileConnectedSendsTheWill(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	w, _, _ := connect(t, b1, ConnectRequest{ClientID: "watch", Expiry: hour})
	subscribe(t, w, SubscribeRequest{Filter: "will/#", QoS: 1})
	w.Disconnect(DisconnectRequest{Graceful: true})
	connect(t, b1, ConnectRequest{ClientID: "dev", Expiry: hour,
		Will: &Will{Msg: &message.Message{Topic: "will/dev", Payload: []byte("crashed"), QoS: 1}}})

	b2, _ := newBrokerOn(t, st, nil)
	w2, k, _ := connect(t, b2, ConnectRequest{ClientID: "watch", Expiry: hour})
	wantPayloads(t, k, "crashed")
	w2.Acked(k.deliveries()[0].PacketID)
	// Sent once: a second restart does not send it again.
	b3, _ := newBrokerOn(t, st, nil)
	_, k3, _ := connect(t, b3, ConnectRequest{ClientID: "watch", Expiry: hour})
	wantPayloads(t, k3)
}

func TestRestartExpiresSessionsByDisconnectTime(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "short", Expiry: 30})
	subscribe(t, c, SubscribeRequest{Filter: "s", QoS: 1})
	c.Disconnect(DisconnectRequest{Graceful: true})

	b2, clk := newBrokerOn(t, st, nil)
	clk.Advance(29 * time.Second)
	if b2.Stats().Sessions.Load() != 1 {
		t.Fatal("session expired before its interval")
	}
	clk.Advance(time.Second)
	if b2.Stats().Sessions.Load() != 0 || b2.Stats().Subscriptions.Load() != 0 {
		t.Fatalf("expired session kept: %d sessions, %d subscriptions", b2.Stats().Sessions.Load(), b2.Stats().Subscriptions.Load())
	}
	recs := 0
	_ = st.Sessions().All(func(store.SessionRecord) error { recs++; return nil })
	if recs != 0 {
		t.Fatalf("expired session still stored")
	}
}

func TestDropOldestCountsAndSurvivesRestart(t *testing.T) {
	st := memstore.New()
	lim := func(c *Config) { c.Queue = QueueLimits{MaxMessages: 3} }
	b1, _ := newBrokerOn(t, st, lim)
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "slow", Expiry: hour})
	subscribe(t, c, SubscribeRequest{Filter: "q", QoS: 1})
	c.Disconnect(DisconnectRequest{Graceful: true})
	pub, _, _ := connect(t, b1, ConnectRequest{ClientID: "pub"})
	for _, p := range []string{"1", "2", "3", "4", "5"} {
		publish(t, pub, "q", p, 1, false)
	}
	if got := b1.Stats().DroppedQueueFull.Load(); got != 2 {
		t.Fatalf("dropped %d, want 2", got)
	}
	_ = b1.Close()

	b2, _ := newBrokerOn(t, st, lim)
	info := b2.Sessions(1)
	if len(info) != 1 || info[0].ClientID != "slow" || info[0].Dropped != 2 || info[0].Queued != 3 {
		t.Fatalf("session info after restart %+v, want slow with 2 dropped and 3 queued", info)
	}
	_, k, _ := connect(t, b2, ConnectRequest{ClientID: "slow", Expiry: hour})
	wantPayloads(t, k, "3", "4", "5")
}

func TestPerSessionLimitsAndRefusePolicy(t *testing.T) {
	b, _ := newBrokerOn(t, memstore.New(), func(c *Config) {
		c.Queue = QueueLimits{MaxMessages: 100}
		c.QueueRules = []QueueRule{{ClientID: "meter-*", Limits: QueueLimits{MaxMessages: 2, Policy: RefuseNew}}}
	})
	for _, id := range []string{"meter-1", "other"} {
		c, _, _ := connect(t, b, ConnectRequest{ClientID: id, Expiry: hour})
		subscribe(t, c, SubscribeRequest{Filter: "m", QoS: 1})
		c.Disconnect(DisconnectRequest{Graceful: true})
	}
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub"})
	for i := range 3 {
		_, err := pub.Publish(&message.Message{Topic: "m", Payload: []byte("x"), QoS: 1})
		if want := i == 2; errors.Is(err, ErrQuotaExceeded) != want {
			t.Fatalf("publish %d: err %v, want quota exceeded: %v", i, err, want)
		}
	}
	got := map[string]SessionInfo{}
	for _, s := range b.Sessions(0) {
		got[s.ClientID] = s
	}
	if got["meter-1"].Queued != 2 || got["meter-1"].Refused != 1 || got["other"].Queued != 3 {
		t.Fatalf("sessions %+v: want meter-1 2 queued 1 refused, other 3 queued", got)
	}
	if b.Stats().RefusedQueueFull.Load() != 1 || b.Stats().DroppedQueueFull.Load() != 0 {
		t.Fatal("refusal not counted as a refusal")
	}
}

func TestSweepDropsAgedMessagesWithinBudget(t *testing.T) {
	b, clk := newBrokerOn(t, memstore.New(), func(c *Config) { c.Queue = QueueLimits{MaxAge: time.Minute} })
	young, youngClk := newBrokerOn(t, memstore.New(), func(c *Config) { c.Queue = QueueLimits{MaxAge: time.Hour} })
	for _, bk := range []*Broker{b, young} {
		c, _, _ := connect(t, bk, ConnectRequest{ClientID: "away", Expiry: hour})
		subscribe(t, c, SubscribeRequest{Filter: "a", QoS: 1})
		c.Disconnect(DisconnectRequest{Graceful: true})
		pub, _, _ := connect(t, bk, ConnectRequest{ClientID: "pub"})
		for range 3 {
			publish(t, pub, "a", "old", 1, false)
		}
	}
	clk.Advance(2 * time.Minute)
	youngClk.Advance(2 * time.Minute)
	if n := young.sweep(100); n != 0 {
		t.Fatalf("swept %d messages younger than the maximum age", n)
	}
	if n := b.sweep(2); n != 2 {
		t.Fatalf("first sweep dropped %d, want its budget of 2", n)
	}
	if n := b.sweep(10); n != 1 {
		t.Fatalf("second sweep dropped %d, want 1", n)
	}
	if b.Stats().Expired.Load() != 3 || b.Stats().Queued.Load() != 0 {
		t.Fatalf("expired %d queued %d", b.Stats().Expired.Load(), b.Stats().Queued.Load())
	}
	_, k, _ := connect(t, b, ConnectRequest{ClientID: "away", Expiry: hour})
	wantPayloads(t, k)
}

// failingStore fails queue pushes and syncs once told to (fail), or only syncs (syncFail).
type failingStore struct {
	*memstore.Store
	fail     error
	syncFail error
}

func (f *failingStore) Sessions() store.Sessions { return failingSessions{f.Store.Sessions(), f} }

func (f *failingStore) Sync() *store.Ticket {
	err := f.fail
	if err == nil {
		err = f.syncFail
	}
	if err == nil {
		return nil
	}
	t := store.NewTicket()
	t.Complete(err)
	return t
}

type failingSessions struct {
	store.Sessions
	f *failingStore
}

func (s failingSessions) Queue(id string) (store.Queue, error) {
	q, err := s.Sessions.Queue(id)
	return failingQueue{q, s.f}, err
}

type failingQueue struct {
	store.Queue
	f *failingStore
}

func (q failingQueue) Push(it store.Item) error {
	if q.f.fail != nil {
		return q.f.fail
	}
	return q.Queue.Push(it)
}

func TestStoreFailuresReachThePublisher(t *testing.T) {
	fs := &failingStore{Store: memstore.New()}
	b, _ := newBrokerOn(t, fs, nil)
	online, _, _ := connect(t, b, ConnectRequest{ClientID: "online", Expiry: hour})
	subscribe(t, online, SubscribeRequest{Filter: "d", QoS: 1})
	away, _, _ := connect(t, b, ConnectRequest{ClientID: "away", Expiry: hour})
	subscribe(t, away, SubscribeRequest{Filter: "d", QoS: 1})
	away.Disconnect(DisconnectRequest{Graceful: true})
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub"})

	res, err := pub.Publish(&message.Message{Topic: "d", Payload: []byte("ok"), QoS: 1})
	if err != nil || res.Durable.Wait() != nil {
		t.Fatalf("healthy store: %v / %v", err, res.Durable.Wait())
	}
	diskFull := errors.New("no space left on device")
	fs.fail = diskFull
	_, err = pub.Publish(&message.Message{Topic: "d", Payload: []byte("lost?"), QoS: 1})
	if !errors.Is(err, ErrStorage) || !errors.Is(err, diskFull) {
		t.Fatalf("publish on a full disk: err %v, want a storage failure with its cause", err)
	}
	if b.Stats().StoreErrors.Load() == 0 {
		t.Fatal("store error not counted")
	}
	// A sync failure reaches the publisher's ticket even when the writes went through.
	fs.fail = nil
	res, _ = pub.Publish(&message.Message{Topic: "d", Payload: []byte("x"), QoS: 1})
	if res.Durable != nil {
		t.Fatal("memory store returned a sync ticket")
	}
	fs.syncFail = diskFull
	res, err = pub.Publish(&message.Message{Topic: "d", Payload: []byte("y"), QoS: 1})
	if err != nil {
		t.Fatalf("the writes did not fail, yet: %v", err)
	}
	if err := res.Durable.Wait(); !errors.Is(err, diskFull) {
		t.Fatalf("publish ticket error %v, want the sync failure", err)
	}
}

// healthStore is a store that refuses writes (Health says why), as a failed or full disk does.
type healthStore struct {
	*memstore.Store
	health error
}

func (h *healthStore) Health() error { return h.health }

// TestPersistentConnectRefusedWhileStoreRefusesWrites: a session that is to outlive its
// connection is not accepted while it cannot be saved (it used to get CONNACK 0 and be lost at
// the next restart); a clean session still connects.
func TestPersistentConnectRefusedWhileStoreRefusesWrites(t *testing.T) {
	st := &healthStore{Store: memstore.New(), health: errors.New("disk full")}
	b, _ := newBrokerOn(t, st, nil)
	_, _, err := b.Connect(context.Background(), ConnectRequest{ClientID: "keep", Expiry: hour, Sink: &sink{}})
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("persistent connect while the store refuses writes: %v, want ErrStorage", err)
	}
	connect(t, b, ConnectRequest{ClientID: "clean"})
	st.health = nil
	connect(t, b, ConnectRequest{ClientID: "keep", Expiry: hour})
}

func TestResumingWithAnExpiryMakesTheSessionDurable(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "grow"})
	subscribe(t, c, SubscribeRequest{Filter: "g", QoS: 1})
	// The same client id connects again, keeping the session and asking it to outlive the
	// connection: what was in memory moves to the store.
	c2, _, res := connect(t, b1, ConnectRequest{ClientID: "grow", Expiry: hour})
	if !res.SessionPresent {
		t.Fatal("session not kept")
	}
	c2.Disconnect(DisconnectRequest{Graceful: true})
	pub, _, _ := connect(t, b1, ConnectRequest{ClientID: "pub"})
	publish(t, pub, "g", "kept", 1, false)

	b2, _ := newBrokerOn(t, st, nil)
	_, k, res := connect(t, b2, ConnectRequest{ClientID: "grow", Expiry: hour})
	if !res.SessionPresent {
		t.Fatal("session not stored")
	}
	wantPayloads(t, k, "kept")
}
