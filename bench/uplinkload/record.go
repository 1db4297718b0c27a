//go:build unix

package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

type key struct {
	pub string
	n   int
}

// record keeps what publishers had acknowledged and what the subscriber received.
type record struct {
	mu      sync.Mutex
	acks    map[key]bool
	ackList []key
	seen    map[key]int
	// arrivals are first arrivals with their time; last is the newest number per publisher.
	arrivals []arrival
	last     map[string]int
	outOrder int
	restore  int // len(ackList) at the restore
	news     chan struct{}
}

type arrival struct {
	k  key
	at time.Time
}

func newRecord() *record {
	return &record{acks: map[key]bool{}, seen: map[key]int{}, last: map[string]int{}, news: make(chan struct{}, 1)}
}

func (r *record) acked(pub string, n int) {
	r.mu.Lock()
	k := key{pub, n}
	r.acks[k] = true
	r.ackList = append(r.ackList, k)
	r.mu.Unlock()
}

func (r *record) ackedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ackList)
}

func (r *record) markRestore() {
	r.mu.Lock()
	r.restore = len(r.ackList)
	r.mu.Unlock()
}

func (r *record) received(topic string) {
	var k key
	if _, err := fmt.Sscanf(topic, "bldg1/load/%3s/%d", &k.pub, &k.n); err != nil {
		return
	}
	now := time.Now()
	r.mu.Lock()
	r.seen[k]++
	if r.seen[k] == 1 {
		r.arrivals = append(r.arrivals, arrival{k, now})
		if k.n < r.last[k.pub] {
			r.outOrder++
		} else {
			r.last[k.pub] = k.n
		}
	}
	r.mu.Unlock()
	select {
	case r.news <- struct{}{}:
	default:
	}
}

// missing counts acknowledged messages not received.
func (r *record) missingLocked() int {
	n := 0
	for k := range r.acks {
		if r.seen[k] == 0 {
			n++
		}
	}
	return n
}

// waitAll waits until every acknowledged message arrived, or nothing arrived for settle.
func (r *record) waitAll(settle time.Duration) bool {
	idle := time.NewTimer(settle)
	defer idle.Stop()
	check := time.NewTicker(200 * time.Millisecond)
	defer check.Stop()
	for {
		r.mu.Lock()
		missing := r.missingLocked()
		r.mu.Unlock()
		if missing == 0 {
			return true
		}
		select {
		case <-r.news:
			if !idle.Stop() {
				<-idle.C
			}
			idle.Reset(settle)
		case <-check.C:
		case <-idle.C:
			return false
		}
	}
}

func (r *record) result(name string) result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := result{Name: name, Acknowledged: len(r.acks), OutOfOrder: r.outOrder}
	res.Lost = r.missingLocked()
	res.Delivered = res.Acknowledged - res.Lost
	for k, c := range r.seen {
		res.Duplicates += c - 1
		if !r.acks[k] {
			res.Unacked++
		}
	}
	return res
}

// drain measures the backlog's drain: from the first arrival after the restore (relink is how
// long that took: reconnecting) until the last message acknowledged before the restore arrived
// (of those that arrived at all: a lost one never ends it), and how many messages arrived in that
// time, live ones included. ok is false when none of the backlog arrived after the restore.
func (r *record) drain(restoredAt time.Time) (n int, relink, d time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	before := map[key]bool{}
	for _, k := range r.ackList[:r.restore] {
		if r.seen[k] > 0 {
			before[k] = true
		}
	}
	var first, done time.Time
	left := len(before)
	for _, a := range r.arrivals {
		if first.IsZero() && !a.at.Before(restoredAt) {
			first = a.at
		}
		if before[a.k] {
			left--
			if left == 0 {
				done = a.at
				break
			}
		}
	}
	if left > 0 || restoredAt.IsZero() || first.IsZero() || !done.After(first) {
		return 0, 0, 0, false
	}
	for _, a := range r.arrivals {
		if !a.at.Before(first) && !a.at.After(done) {
			n++
		}
	}
	return n, first.Sub(restoredAt), done.Sub(first), true
}

// subscriber is the DR's persistent QoS 1 subscriber; it comes back when its connection ends.
type subscriber struct {
	addr string
	rec  *record
	done chan struct{}
	wg   sync.WaitGroup
}

func (s *subscriber) start() error {
	s.done = make(chan struct{})
	first := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		once := false
		for {
			c, err := dialMQTT(s.addr, "bench-sub", false, s.rec.received)
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "bldg1/#", QoS: 1}}})
				cancel()
			}
			if !once {
				once = true
				first <- err
			}
			if err == nil {
				select {
				case <-s.done:
					_ = c.Disconnect(&paho.Disconnect{})
					return
				case <-c.Done():
				}
			}
			select {
			case <-s.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return <-first
}

func (s *subscriber) stop() {
	close(s.done)
	s.wg.Wait()
}

// dialMQTT connects an MQTT 5 client; a persistent one (clean false) keeps its session an hour.
func dialMQTT(addr, id string, clean bool, onMsg func(string)) (*paho.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	cfg := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 10 * time.Second}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onMsg(pr.Packet.Topic); return true, nil },
		}
	}
	c := paho.NewClient(cfg)
	expiry := uint32(3600)
	cp := &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30}
	if !clean {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if ack.ReasonCode != 0 {
		_ = conn.Close()
		return nil, fmt.Errorf("connack %d", ack.ReasonCode)
	}
	return c, nil
}
