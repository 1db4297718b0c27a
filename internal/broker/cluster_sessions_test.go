package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/memstore"
)

// fakeDirectory is a fakeCluster that also keeps a session directory.
type fakeDirectory struct {
	fakeCluster
	dmu     sync.Mutex
	claims  []string // client/identity/clean/exclusive
	forgets []string
	refuse  error
}

func (f *fakeDirectory) Claim(_ context.Context, id, identity string, clean, exclusive bool) error {
	f.dmu.Lock()
	defer f.dmu.Unlock()
	f.claims = append(f.claims, fmt.Sprintf("%s/%s/%v/%v", id, identity, clean, exclusive))
	return f.refuse
}

func (f *fakeDirectory) Forget(id string) {
	f.dmu.Lock()
	defer f.dmu.Unlock()
	f.forgets = append(f.forgets, id)
}

// A forwarded QoS 1 message that a session here cannot keep (its queue is full and refuses)
// fails the origin's acceptance instead of passing for durable.
func TestClusterDeliverRemoteFailsWhatItCannotKeep(t *testing.T) {
	b, _ := newTestBroker(t, func(c *Config) {
		c.Queue = QueueLimits{MaxMessages: 1, Policy: RefuseNew}
	})
	b.SetCluster(&fakeCluster{})
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "s", Expiry: 60})
	subscribe(t, c, SubscribeRequest{Filter: "t", QoS: 1})
	c.Disconnect(DisconnectRequest{Graceful: true})
	if res := b.DeliverRemote(&message.Message{Topic: "t", Payload: []byte("1"), QoS: 1}, false, nil); res.Durable.Wait() != nil {
		t.Fatal("the first message did not fit")
	}
	res := b.DeliverRemote(&message.Message{Topic: "t", Payload: []byte("2"), QoS: 1}, false, nil)
	if err := res.Durable.Wait(); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("a refused copy was accepted: %v", err)
	}
}

// A connect claims its client id in the cluster's directory first, and is refused when the
// claim is; sessions the broker assigned or keeps for itself are not claimed. A session that
// ends leaves the directory; one replaced by a clean start does not (the new one has the id).
func TestClusterConnectClaimsTheClientID(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	fd := &fakeDirectory{}
	b.SetCluster(fd)
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "a", Principal: nil})
	connect(t, b, ConnectRequest{ClientID: "a", CleanStart: true})
	connect(t, b, ConnectRequest{ClientID: ""})
	own, _ := auth.NewPrincipal("", "$own", nil)
	connect(t, b, ConnectRequest{ClientID: "$own", Principal: own})
	if fmt.Sprint(fd.claims) != "[a//false/false a//true/false]" {
		t.Fatalf("claims %q", fd.claims)
	}
	if len(fd.forgets) != 0 {
		t.Fatalf("forgotten at a clean start: %q", fd.forgets)
	}
	_ = c
	d, _, _ := connect(t, b, ConnectRequest{ClientID: "gone"})
	d.Disconnect(DisconnectRequest{Graceful: true})
	if fmt.Sprint(fd.forgets) != "[gone]" {
		t.Fatalf("forgets %q", fd.forgets)
	}
	fd.refuse = errors.New("no leader")
	if _, _, err := b.Connect(context.Background(), ConnectRequest{ClientID: "x", Sink: &sink{}}); !errors.Is(err, ErrStorage) {
		t.Fatalf("connect with a refused claim: %v", err)
	}
	fd.refuse = ErrClientIDInUse
	if _, _, err := b.Connect(context.Background(), ConnectRequest{ClientID: "x", Sink: &sink{}}); !errors.Is(err, ErrClientIDInUse) {
		t.Fatalf("connect with an id in use elsewhere: %v", err)
	}
}

// Releasing a session closes its connection as taken over and takes its subscriptions away,
// but leaves its stored state; adopting it on another core (here: on the same store, as the
// cluster's replica would give it) brings back subscriptions, queue and messages in flight.
func TestClusterReleaseAndAdoptSession(t *testing.T) {
	st := memstore.New()
	cfg := DefaultConfig()
	b1, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close()
	c, k, _ := connect(t, b1, ConnectRequest{ClientID: "s", Expiry: NeverExpire, ReceiveMax: 1})
	subscribe(t, c, SubscribeRequest{Filter: "t/#", QoS: 1})
	pub, _, _ := connect(t, b1, ConnectRequest{ClientID: "p"})
	for i := range 3 {
		publish(t, pub, "t/x", fmt.Sprint(i), 1, false)
	}
	wantPayloads(t, k, "0") // one in flight, two queued
	b1.ReleaseSession("s")
	if k.closed == nil || !errors.Is(k.closed, ErrSessionTakenOver) {
		t.Fatalf("released connection closed with %v", k.closed)
	}
	if r := b1.DeliverRemote(&message.Message{Topic: "t/y", Payload: []byte("late"), QoS: 1}, false, nil); r.Matched != 0 {
		t.Fatal("a released session still receives")
	}
	if n := b1.Stats().Sessions.Load(); n != 1 {
		t.Fatalf("%d sessions after the release", n)
	}
	var rec store.SessionRecord
	_ = st.Sessions().All(func(r store.SessionRecord) error {
		if r.ClientID == "s" {
			rec = r
		}
		return nil
	})
	if len(rec.Subscriptions) != 1 {
		t.Fatalf("the store lost the session: %+v", rec)
	}
	b2, err := New(cfg, memstore.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	b2.store = st // the replica: the same state
	if err := b2.AdoptSession(rec); err != nil {
		t.Fatal(err)
	}
	c2, k2, res := connect(t, b2, ConnectRequest{ClientID: "s", Expiry: NeverExpire})
	if !res.SessionPresent {
		t.Fatal("adopted session not present")
	}
	_ = c2
	got := k2.deliveries()
	if len(got) != 3 || !got[0].Dup || string(got[0].Msg.Payload) != "0" || string(got[2].Msg.Payload) != "2" {
		t.Fatalf("adopted session delivered %+v", got)
	}
	pub2, _, _ := connect(t, b2, ConnectRequest{ClientID: "p2"})
	publish(t, pub2, "t/z", "after", 1, false)
	if p := k2.payloads(); p[len(p)-1] != "after" {
		t.Fatalf("adopted subscription does not match: %q", p)
	}
}
