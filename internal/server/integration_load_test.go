package server_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestLargeMessages sends payloads larger than the server's read buffer and than one WebSocket
// frame over every transport, byte-exact.
func TestLargeMessages(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	payload := make([]byte, 300<<10)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			sub := connectV5(t, dial(t, srv, tr), &paho.Connect{ClientID: uniqueID("bigsub"), CleanStart: true})
			sub.sub("big/"+string(tr), 1)
			pub := connectV5(t, dial(t, srv, tr), &paho.Connect{ClientID: uniqueID("bigpub"), CleanStart: true})
			for qos := byte(0); qos <= 1; qos++ {
				pub.publish(&paho.Publish{Topic: "big/" + string(tr), QoS: qos, Payload: payload})
				m := sub.next()
				if !bytes.Equal(m.Payload, payload) {
					t.Fatalf("QoS %d: %d-byte payload arrived as %d bytes or altered", qos, len(payload), len(m.Payload))
				}
			}
		})
	}
}

// TestConcurrentPublishers: many publishers on all transports publish at once to several
// subscribers; every subscriber gets every QoS 1 message exactly once, and each publisher's
// messages in the order sent.
func TestConcurrentPublishers(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const pubs, perPub, subs = 12, 40, 4
	var subscribers []*v5Client
	for i := 0; i < subs; i++ {
		s := connectV5(t, dial(t, srv, allTransports[i%3]), &paho.Connect{ClientID: uniqueID("csub"), CleanStart: true})
		s.sub("load/#", 1)
		subscribers = append(subscribers, s)
	}
	var publishers []*v5Client
	for i := 0; i < pubs; i++ {
		publishers = append(publishers, connectV5(t, dial(t, srv, allTransports[i%3]), &paho.Connect{ClientID: uniqueID("cpub"), CleanStart: true}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for i, p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perPub; j++ {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				_, err := p.c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("load/%d", i), QoS: 1, Payload: []byte(strconv.Itoa(j))})
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for si, s := range subscribers {
		next := make([]int, pubs)
		for n := 0; n < pubs*perPub; n++ {
			m := s.next()
			var p int
			if _, err := fmt.Sscanf(m.Topic, "load/%d", &p); err != nil {
				t.Fatalf("subscriber %d: topic %q", si, m.Topic)
			}
			j, _ := strconv.Atoi(string(m.Payload))
			if j != next[p] {
				t.Fatalf("subscriber %d: publisher %d's message %d arrived when %d was due", si, p, j, next[p])
			}
			next[p]++
		}
		s.sub("$m", 1)
		s.pub("$m", 1, "marker")
		if extra := s.until("$m"); len(extra) != 0 {
			t.Errorf("subscriber %d got %d extra messages", si, len(extra))
		}
	}
}

// TestManySubscriptionsFanOut: one message fans out to many sessions with different subscription
// options (QoS, subscription identifiers, MQTT 3.1.1 and 5) in one go.
func TestManySubscriptionsFanOut(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const n = 30
	var v5s []*v5Client
	var v3s []*v3Client
	for i := 0; i < n; i++ {
		if i%3 == 0 {
			c := connectV3(t, "tcp://"+srv.Addr("mqtt"), uniqueID("fan3"))
			c.sub("fan/+", byte(i%3))
			v3s = append(v3s, c)
			continue
		}
		c := v5(t, srv, uniqueID("fan5"))
		id := i
		c.subscribeProps(&paho.SubscribeProperties{SubscriptionIdentifier: &id}, paho.SubscribeOptions{Topic: "fan/#", QoS: byte(i % 3)})
		v5s = append(v5s, c)
	}
	pub := v5(t, srv, uniqueID("fanpub"))
	body := strings.Repeat("f", 100)
	pub.pub("fan/x", 2, body)
	for i, c := range v5s {
		m := c.expect("fan/x", body)
		if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil {
			t.Errorf("v5 subscriber %d: no subscription identifier", i)
		}
	}
	for _, c := range v3s {
		c.expect("fan/x", body, 0)
	}
}
