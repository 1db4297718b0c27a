package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/cluster"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server"
)

// twoNodes starts a cluster of two servers (b joins a) and returns once b is a member with a
// leader; opts adjust both configurations first.
func twoNodes(t *testing.T, opts ...func(*config.Config)) (a, b *server.Server) {
	t.Helper()
	la := freeTCP(t)
	a = startServer(t, append(opts[:len(opts):len(opts)], func(c *config.Config) {
		c.DataDir = t.TempDir()
		c.Cluster = config.Cluster{NodeID: "a", Listen: la, Replicas: 3}
	})...)
	b = startServer(t, append(opts[:len(opts):len(opts)], func(c *config.Config) {
		c.DataDir = t.TempDir()
		c.Cluster = config.Cluster{NodeID: "b", Listen: freeTCP(t), Join: []string{la}, Replicas: 3}
	})...)
	deadline := time.Now().Add(4 * waitTimeout)
	for {
		var st cluster.Status
		resp, err := http.Get("http://" + b.Addr("http") + "/v1/cluster")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && st.Leader != "" && len(st.Members) == 2 {
			return a, b
		}
		if time.Now().After(deadline) {
			t.Fatalf("b did not join a: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a status, not synchronising
	}
}

// keepPublishing publishes on pub until the test ends: the subscriber's interest reaches the
// other node in its own time, and the first publish after that is the one that must cross.
func keepPublishing(t *testing.T, pub *v5Client, topic, payload string) {
	keepPublishingProps(t, pub, topic, payload, nil)
}

func keepPublishingProps(t *testing.T, pub *v5Client, topic, payload string, props *paho.PublishProperties) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = pub.c.Publish(t.Context(), &paho.Publish{Topic: topic, Payload: []byte(payload), Properties: props})
			}
		}
	}()
}

// An SSE subscriber on one node receives what an MQTT client publishes on the other.
func TestClusterSSEReceivesPublishFromOtherNode(t *testing.T) {
	a, b := twoNodes(t)
	sse, _ := openStream(t, "http://"+b.Addr("http")+"/v1/sub/cross/%23", "text/event-stream")
	nextLine(t, sse, ": subscribed")
	keepPublishing(t, v5(t, a, uniqueID("pub")), "cross/sse", "from-a")
	if got := nextLine(t, sse, "data:"); got == "" {
		t.Fatal("empty event")
	}
}

// An MQTT 5 request on one node reaches a service on the other, and the reply comes back.
func TestClusterMQTT5CallAcrossNodes(t *testing.T) {
	a, b := twoNodes(t)
	service := v5(t, b, uniqueID("service"))
	service.sub("$rpc/demo/echo", 1)
	caller := v5(t, a, uniqueID("caller"))
	reply := "reply/" + uniqueID("c")
	caller.sub(reply, 1)
	var corr string
	deadline := time.Now().Add(4 * waitTimeout)
	for i := 0; ; i++ {
		corr = fmt.Sprint("call-", i)
		res := caller.publish(&paho.Publish{Topic: "$rpc/demo/echo", QoS: 1, Payload: []byte("ping"),
			Properties: &paho.PublishProperties{ResponseTopic: reply, CorrelationData: []byte(corr)}})
		if res.ReasonCode == 0 {
			break
		}
		if res.ReasonCode != 0x10 || time.Now().After(deadline) {
			t.Fatalf("call refused: %#x", res.ReasonCode)
		}
		time.Sleep(20 * time.Millisecond) // a pause between retries, not synchronisation
	}
	m := service.next()
	if string(m.Properties.CorrelationData) != corr || m.Properties.ResponseTopic != reply {
		t.Fatalf("the service received %+v", m)
	}
	// The reply travels b -> a, where the caller's interest in its reply topic arrives in its
	// own time: the service answers until it did. Failure replies to earlier attempts ("no
	// responders") are skipped.
	keepPublishingProps(t, service, reply, "pong", &paho.PublishProperties{CorrelationData: m.Properties.CorrelationData})
	for {
		got := caller.next()
		if string(got.Properties.CorrelationData) == corr {
			if string(got.Payload) != "pong" {
				t.Fatalf("the caller received %q", got.Payload)
			}
			return
		}
	}
}
