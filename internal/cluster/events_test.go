package cluster

import (
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// A subscriber to $SYS/events/# on one node sees a client connect on another: server events
// cross the cluster's links like any publication, once. "Once" is checked with markers: n1
// publishes a marker after the connect, and since n1's publications reach n2 over one link in
// order, when the marker arrives every copy of the event that was ever going to arrive before it
// has; a second marker after the first catches a late duplicate.
func TestServerEventsAreClusterWide(t *testing.T) {
	_, n1, n2, _ := brokerCluster(t)
	watcher, k, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "watch-events"})
	defer watcher.Disconnect(broker.DisconnectRequest{Graceful: true})
	sub(t, watcher, broker.EventsPrefix+"connected")
	sub(t, watcher, "marker/#")
	// The subscriptions reach n1 as interest; until then a connect there is nobody's business.
	pub, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "marker-source"})
	defer pub.Disconnect(broker.DisconnectRequest{Graceful: true})
	eventually(t, "n1 learns n2's interest in server events and markers", func() bool {
		probe, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "probe", Announce: true})
		probe.Disconnect(broker.DisconnectRequest{Graceful: true})
		if _, err := pub.Publish(&message.Message{Topic: "marker/ready", Payload: []byte("ready")}); err != nil {
			t.Fatal(err)
		}
		return count(k.payloads(), `"probe"`) > 0 && count(k.payloads(), "ready") > 0
	})
	c, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "event-source", Announce: true, Face: "mqtt"})
	defer c.Disconnect(broker.DisconnectRequest{Graceful: true})
	events := func() int {
		n := 0
		for _, p := range k.payloads() {
			if strings.Contains(p, `"event-source"`) && strings.Contains(p, `"node":"`+n1.id+`"`) {
				n++
			}
		}
		return n
	}
	for _, marker := range []string{"marker-1", "marker-2"} {
		if _, err := pub.Publish(&message.Message{Topic: "marker/" + marker, Payload: []byte(marker)}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "n2 receives "+marker, func() bool { return count(k.payloads(), marker) == 1 })
		if n := events(); n != 1 {
			t.Fatalf("when %s arrived n2 had seen the connect on n1 %d times, want exactly 1: %q", marker, n, k.payloads())
		}
	}
}

// count says how many payloads contain s.
func count(payloads []string, s string) int {
	n := 0
	for _, p := range payloads {
		if strings.Contains(p, s) {
			n++
		}
	}
	return n
}
