package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/memstore"
)

// recordingStore notes the session writes and syncs the core makes, in order; syncErr makes
// every sync ticket fail with it.
type recordingStore struct {
	*memstore.Store
	mu      sync.Mutex
	events  []string
	syncErr error
}

func (r *recordingStore) note(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// take returns the events since the last take.
func (r *recordingStore) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := strings.Join(r.events, " ")
	r.events = nil
	return e
}

func (r *recordingStore) Sessions() store.Sessions { return recordingSessions{r.Store.Sessions(), r} }

func (r *recordingStore) Sync() *store.Ticket {
	r.note("sync")
	if r.syncErr == nil {
		return nil
	}
	t := store.NewTicket()
	t.Complete(r.syncErr)
	return t
}

type recordingSessions struct {
	store.Sessions
	r *recordingStore
}

func (s recordingSessions) Put(rec store.SessionRecord) error {
	s.r.note(fmt.Sprintf("put(%d subs)", len(rec.Subscriptions)))
	return s.Sessions.Put(rec)
}

func (s recordingSessions) PutSubscriptions(id string, subs []store.Subscription) error {
	fs := make([]string, len(subs))
	for i, sub := range subs {
		fs[i] = fmt.Sprintf("%s:%d", sub.Filter, sub.QoS)
	}
	s.r.note("put-subs" + fmt.Sprint(fs))
	return s.Sessions.PutSubscriptions(id, subs)
}

func (s recordingSessions) DeleteSubscriptions(id string, filters []string) error {
	s.r.note("del-subs" + fmt.Sprint(filters))
	return s.Sessions.DeleteSubscriptions(id, filters)
}

// TestSubscribeStoresOnlyTheChange: a subscribe or unsubscribe on a persistent session writes the
// subscriptions that changed, not the record with all of them, and syncs before it returns; a
// restart finds the set those changes left.
func TestSubscribeStoresOnlyTheChange(t *testing.T) {
	st := &recordingStore{Store: memstore.New()}
	b1, _ := newBrokerOn(t, st, nil)
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "s", Expiry: hour})
	st.take()
	subscribe(t, c, SubscribeRequest{Filter: "a", QoS: 1}, SubscribeRequest{Filter: "b", QoS: 2})
	if got := st.take(); got != "put-subs[a:1 b:2] sync" {
		t.Fatalf("subscribe wrote: %s", got)
	}
	subscribe(t, c, SubscribeRequest{Filter: "a", QoS: 0})
	if got := st.take(); got != "put-subs[a:0] sync" {
		t.Fatalf("subscribe again wrote: %s", got)
	}
	if got := c.Unsubscribe([]string{"b", "never"}); !got[0] || got[1] {
		t.Fatalf("unsubscribe: %v", got)
	}
	if got := st.take(); got != "del-subs[b] sync" {
		t.Fatalf("unsubscribe wrote: %s", got)
	}
	c.Disconnect(DisconnectRequest{Graceful: true})
	if got := st.take(); got != "put(0 subs)" {
		t.Fatalf("disconnect wrote: %s", got)
	}
	_ = b1.Close()

	b2, _ := newBrokerOn(t, st, nil)
	_, k, res := connect(t, b2, ConnectRequest{ClientID: "s", Expiry: hour})
	if info, _ := b2.Session("s"); !res.SessionPresent || info.Subscriptions != 1 {
		t.Fatalf("after a restart: present %v, %d subscriptions", res.SessionPresent, info.Subscriptions)
	}
	pub, _, _ := connect(t, b2, ConnectRequest{ClientID: "pub"})
	publish(t, pub, "b", "unsubscribed", 1, false)
	publish(t, pub, "a", "kept", 1, false)
	wantPayloads(t, k, "kept")
	if d := k.deliveries()[0]; d.QoS != 0 {
		t.Fatalf("delivered at QoS %d, the replaced subscription's is 0", d.QoS)
	}
}

// TestSubscribeWaitsForTheSync: the subscribe returns only once the sync's outcome is known, and
// a failed sync is counted as a store error.
func TestSubscribeWaitsForTheSync(t *testing.T) {
	st := &recordingStore{Store: memstore.New()}
	b, _ := newBrokerOn(t, st, nil)
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "s", Expiry: hour})
	st.syncErr = errors.New("fsync failed")
	subscribe(t, c, SubscribeRequest{Filter: "a", QoS: 1})
	if b.Stats().StoreErrors.Load() != 1 {
		t.Fatalf("store errors %d after a failed sync", b.Stats().StoreErrors.Load())
	}
	c.Unsubscribe([]string{"a"})
	if b.Stats().StoreErrors.Load() != 2 {
		t.Fatalf("store errors %d after a failed sync", b.Stats().StoreErrors.Load())
	}
}

// TestSubscriptionsOfAnExpiryZeroResumeAreKept: a persistent session resumed with no expiry
// still stores its subscription changes, so a takeover that asks for an expiry again keeps
// them across a restart.
func TestSubscriptionsOfAnExpiryZeroResumeAreKept(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "s", Expiry: hour})
	subscribe(t, c, SubscribeRequest{Filter: "old", QoS: 1})
	c.Disconnect(DisconnectRequest{Graceful: true})
	c0, _, _ := connect(t, b1, ConnectRequest{ClientID: "s"})
	subscribe(t, c0, SubscribeRequest{Filter: "new", QoS: 1})
	c0.Unsubscribe([]string{"old"})
	c1, _, _ := connect(t, b1, ConnectRequest{ClientID: "s", Expiry: hour}) // takes over
	c1.Disconnect(DisconnectRequest{Graceful: true})
	_ = b1.Close()

	b2, _ := newBrokerOn(t, st, nil)
	_, k, _ := connect(t, b2, ConnectRequest{ClientID: "s", Expiry: hour})
	pub, _, _ := connect(t, b2, ConnectRequest{ClientID: "pub"})
	publish(t, pub, "old", "unsubscribed", 1, false)
	publish(t, pub, "new", "subscribed", 1, false)
	wantPayloads(t, k, "subscribed")
}

// TestResumingWithAnExpiryStoresTheSubscriptions: a session that was in memory only and is
// resumed asking to outlive its connection has its subscriptions stored with it.
func TestResumingWithAnExpiryStoresTheSubscriptions(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "grow"})
	subscribe(t, c, SubscribeRequest{Filter: "g", QoS: 1})
	c2, _, _ := connect(t, b1, ConnectRequest{ClientID: "grow", Expiry: hour})
	c2.Disconnect(DisconnectRequest{Graceful: true})
	_ = b1.Close()

	b2, _ := newBrokerOn(t, st, nil)
	_, k, _ := connect(t, b2, ConnectRequest{ClientID: "grow", Expiry: hour})
	pub, _, _ := connect(t, b2, ConnectRequest{ClientID: "pub"})
	publish(t, pub, "g", "after the restart", 1, false)
	wantPayloads(t, k, "after the restart")
}
