package cluster

import (
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/broker"
)

// A subscriber to $SYS/events/# on one node sees a client connect on another: server events
// cross the cluster's links like any publication, once.
func TestServerEventsAreClusterWide(t *testing.T) {
	_, n1, n2, _ := brokerCluster(t)
	watcher, k, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "watch-events"})
	defer watcher.Disconnect(broker.DisconnectRequest{Graceful: true})
	sub(t, watcher, broker.EventsPrefix+"connected")
	// The subscription reaches n1 as interest; until then a connect there is nobody's business.
	eventually(t, "n1 learns n2's interest in server events", func() bool {
		probe, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "probe", Announce: true})
		probe.Disconnect(broker.DisconnectRequest{Graceful: true})
		for _, p := range k.payloads() {
			if strings.Contains(p, `"probe"`) {
				return true
			}
		}
		return false
	})
	c, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "event-source", Announce: true, Face: "mqtt"})
	defer c.Disconnect(broker.DisconnectRequest{Graceful: true})
	eventually(t, "n2 sees the connect on n1 exactly once", func() bool {
		n := 0
		for _, p := range k.payloads() {
			if strings.Contains(p, `"event-source"`) && strings.Contains(p, `"node":"`+n1.id+`"`) {
				n++
			}
		}
		return n == 1
	})
}
