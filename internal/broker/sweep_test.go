package broker

import (
	"strconv"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/memstore"
)

func sweepListLen(b *Broker) int {
	b.sweepMu.Lock()
	defer b.sweepMu.Unlock()
	return len(b.sweepList)
}

// The sweep visits only sessions with something queued or a record to save: idle sessions,
// connected or away, are not on its list, a session joins it when it queues and leaves once its
// queue is empty.
func TestSweepVisitsOnlySessionsWithWork(t *testing.T) {
	b, clk := newBrokerOn(t, memstore.New(), func(c *Config) { c.Queue = QueueLimits{MaxAge: time.Minute} })
	for i := range 50 {
		c, _, _ := connect(t, b, ConnectRequest{ClientID: "idle-" + strconv.Itoa(i), Expiry: hour})
		subscribe(t, c, SubscribeRequest{Filter: "idle/" + strconv.Itoa(i), QoS: 1})
		if i%2 == 0 {
			c.Disconnect(DisconnectRequest{Graceful: true})
		}
	}
	if n := sweepListLen(b); n != 0 {
		t.Fatalf("%d idle sessions listed for the sweep, want none", n)
	}
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "away", Expiry: hour})
	subscribe(t, c, SubscribeRequest{Filter: "a", QoS: 1})
	c.Disconnect(DisconnectRequest{Graceful: true})
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub"})
	publish(t, pub, "a", "old", 1, false)
	publish(t, pub, "a", "old", 1, false)
	if n := sweepListLen(b); n != 1 {
		t.Fatalf("%d sessions listed after one queued, want 1", n)
	}
	if n := b.sweep(100); n != 0 {
		t.Fatalf("swept %d messages before they aged", n)
	}
	if n := sweepListLen(b); n != 1 {
		t.Fatalf("a session with a queue left the list (%d listed)", n)
	}
	clk.Advance(2 * time.Minute)
	if n := b.sweep(1); n != 1 {
		t.Fatalf("swept %d, want the budget of 1", n)
	}
	if n := b.sweep(100); n != 1 {
		t.Fatalf("swept %d, want the last one", n)
	}
	if n := sweepListLen(b); n != 0 {
		t.Fatalf("%d sessions listed with empty queues, want none", n)
	}
	// It joins again when it queues again.
	publish(t, pub, "a", "new", 1, false)
	if n := sweepListLen(b); n != 1 {
		t.Fatalf("%d sessions listed after queueing again, want 1", n)
	}
}

// A session recovered at start with a queue is swept like one that queued since.
func TestSweepSeesRecoveredQueues(t *testing.T) {
	st := memstore.New()
	limits := func(c *Config) { c.Queue = QueueLimits{MaxAge: time.Minute} }
	b1, _ := newBrokerOn(t, st, limits)
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "away", Expiry: hour})
	subscribe(t, c, SubscribeRequest{Filter: "a", QoS: 1})
	c.Disconnect(DisconnectRequest{Graceful: true})
	pub, _, _ := connect(t, b1, ConnectRequest{ClientID: "pub"})
	for range 3 {
		publish(t, pub, "a", "old", 1, false)
	}
	_ = b1.Close()

	b2, clk := newBrokerOn(t, st, limits)
	clk.Advance(2 * time.Minute)
	if n := b2.sweep(100); n != 3 {
		t.Fatalf("swept %d of the recovered session's 3 aged messages", n)
	}
}

// A session whose queue limit dropped messages is listed until its record, with the count, is
// saved, even though its queue stays full.
func TestSweepSavesDropCounts(t *testing.T) {
	st := memstore.New()
	b, _ := newBrokerOn(t, st, func(c *Config) { c.Queue = QueueLimits{MaxMessages: 2, Policy: DropOldest} })
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "away", Expiry: hour})
	subscribe(t, c, SubscribeRequest{Filter: "a", QoS: 1})
	c.Disconnect(DisconnectRequest{Graceful: true})
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub"})
	for range 3 {
		publish(t, pub, "a", "m", 1, false)
	}
	b.sweep(100)
	var dropped uint64
	if err := st.Sessions().All(func(r store.SessionRecord) error {
		if r.ClientID == "away" {
			dropped = r.Dropped
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if dropped != 1 {
		t.Fatalf("stored drop count %d after the sweep, want 1", dropped)
	}
}
