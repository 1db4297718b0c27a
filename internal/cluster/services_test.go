package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// msgSink records whole messages (calls and replies carry what matters in their properties).
type msgSink struct {
	*tsink
	mu   sync.Mutex
	msgs []*message.Message
}

func (k *msgSink) Send(d broker.Delivery) broker.SendResult {
	k.mu.Lock()
	k.msgs = append(k.msgs, d.Msg.Clone())
	k.mu.Unlock()
	return k.tsink.Send(d)
}

// withCorr returns the messages received with correlation data corr.
func (k *msgSink) withCorr(corr string) []*message.Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*message.Message
	for _, m := range k.msgs {
		if string(m.Props.CorrelationData) == corr {
			out = append(out, m)
		}
	}
	return out
}

func connMsgs(t *testing.T, n *tnode, id string) (*broker.Client, *msgSink) {
	t.Helper()
	k := &msgSink{tsink: newTSink()}
	c, _, err := n.b.Connect(context.Background(), broker.ConnectRequest{ClientID: id, Sink: k})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Disconnect(broker.DisconnectRequest{Graceful: true}) })
	return c, k
}

func call(c *broker.Client, corr string) error {
	m := &message.Message{Topic: "$rpc/demo/echo", Payload: []byte("ping"), QoS: 1}
	m.Props.ResponseTopic = "reply/caller"
	m.Props.CorrelationData = []byte(corr)
	_, err := c.Publish(m)
	return err
}

func status(m *message.Message) string {
	for _, p := range m.Props.User {
		if p.Key == broker.StatusProperty {
			return p.Value
		}
	}
	return ""
}

// callAcross connects a service on n2 and a caller on n1, and returns once a call from n1
// reached the service (that is, n1 knows n2's interest in the procedure).
func callAcross(t *testing.T, n1, n2 *tnode) (caller, service *broker.Client, ck, sk *msgSink) {
	t.Helper()
	caller, ck = connMsgs(t, n1, "caller")
	sub(t, caller, "reply/caller")
	service, sk = connMsgs(t, n2, "service")
	sub(t, service, "$rpc/demo/echo")
	eventually(t, "n1 learns the service on n2", func() bool {
		err := call(caller, "probe")
		if err != nil && !errors.Is(err, broker.ErrNoResponders) {
			t.Fatal(err)
		}
		return err == nil
	})
	eventually(t, "the service receives the call", func() bool { return len(sk.withCorr("probe")) > 0 })
	return caller, service, ck, sk
}

// A call made on one node reaches the service connected to another, and the reply comes back.
func TestCallReachesServiceOnAnotherNode(t *testing.T) {
	_, n1, n2, _ := brokerCluster(t)
	_, service, ck, sk := callAcross(t, n1, n2)
	got := sk.withCorr("probe")[0]
	if got.Props.ResponseTopic != "reply/caller" || string(got.Payload) != "ping" {
		t.Fatalf("the service received %+v", got)
	}
	// The call followed the caller's interest in its reply topic on the link (interest_order.go),
	// so one answer is enough.
	r := &message.Message{Topic: "reply/caller", Payload: []byte("pong")}
	r.Props.CorrelationData = []byte("probe")
	r.Props.User = []message.UserProperty{{Key: broker.StatusProperty, Value: "0"}}
	if _, err := service.Publish(r); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reply reaches the caller on n1", func() bool {
		return slices.ContainsFunc(ck.withCorr("probe"), func(m *message.Message) bool {
			return string(m.Payload) == "pong" && status(m) == "0"
		})
	})
}

// When the node of the service dies with a call on it, the caller is answered with a failure at
// once (not left to its timeout), and a new call finds no responders straight away.
func TestCallFailsWhenServiceNodeDies(t *testing.T) {
	tc, n1, n2, _ := brokerCluster(t)
	caller, _, ck, sk := callAcross(t, n1, n2)
	if err := call(caller, "pending"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the service receives the pending call", func() bool { return len(sk.withCorr("pending")) > 0 })
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	tc.isolate(n2, false)
	start := time.Now()
	eventually(t, "the caller is told the pending call failed", func() bool {
		return slices.ContainsFunc(ck.withCorr("pending"), func(m *message.Message) bool { return status(m) == "-1" })
	})
	t.Logf("failed after %s", time.Since(start).Round(time.Millisecond))
	if err := call(caller, "after"); !errors.Is(err, broker.ErrNoResponders) {
		t.Fatalf("a call to the dead node's only service: %v, want no responders", err)
	}
	if ms := ck.withCorr("after"); len(ms) != 1 || status(ms[0]) != "-1" {
		t.Fatalf("the caller's answer to a call with no responders: %+v", ms)
	}
}

// The table of forwarded calls: an answered call is not failed when its node's link goes down
// later, and a call sent to two nodes fails only when both are gone.
func TestRemoteCallsTable(t *testing.T) {
	var r remoteCalls
	m := &message.Message{Topic: "$rpc/demo/echo"}
	m.Props.ResponseTopic, m.Props.CorrelationData = "reply/x", []byte("1")
	if r.sent("n2", &message.Message{Topic: "plain"}) {
		t.Fatal("a message that is not a call was remembered")
	}
	r.sent("n2", m)
	reply := &message.Message{Topic: "reply/x"}
	reply.Props.CorrelationData = []byte("1")
	r.answered(reply)
	if replies, _ := r.lost("n2"); len(replies) != 0 {
		t.Fatalf("an answered call failed: %q", replies)
	}
	r.sent("n2", m)
	r.sent("n3", m)
	if replies, _ := r.lost("n2"); len(replies) != 0 {
		t.Fatalf("a call n3 may still answer failed: %q", replies)
	}
	replies, corrs := r.lost("n3")
	if len(replies) != 1 || replies[0] != "reply/x" || string(corrs[0]) != "1" {
		t.Fatalf("lost n3: %q %q", replies, corrs)
	}
	if len(r.byKey) != 0 || len(r.topics) != 0 {
		t.Fatalf("left behind: %v %v", r.byKey, r.topics)
	}
}

// tern/services asked on one node lists a service connected to another.
func TestServicesListsEveryNode(t *testing.T) {
	_, n1, n2, _ := brokerCluster(t)
	callAcross(t, n1, n2) // n1 knows the service on n2
	c, k := connMsgs(t, n1, "lister")
	sub(t, c, "reply/lister")
	m := &message.Message{Topic: broker.ServicesProcedure, QoS: 1}
	m.Props.ResponseTopic, m.Props.CorrelationData = "reply/lister", []byte("list")
	if _, err := c.Publish(m); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the listing arrives", func() bool { return len(k.withCorr("list")) > 0 })
	var got []broker.ServiceInfo
	if err := json.Unmarshal(k.withCorr("list")[0].Payload, &got); err != nil {
		t.Fatal(err)
	}
	want := broker.ServiceInfo{Namespace: "demo", Procedure: "echo", Instances: 1}
	if !slices.Contains(got, want) {
		t.Fatalf("n1 lists %+v, want %+v among them", got, want)
	}
}

// An mBus namespace (the client's identifier, connected exclusively, as the mBus face does) is
// unique cluster-wide: the session directory's claim refuses it on another node while it is
// connected, and gives it out again once its holder left.
func TestNamespaceUniqueAcrossNodes(t *testing.T) {
	_, n1, n2, _ := brokerCluster(t)
	ns := broker.ConnectRequest{ClientID: "org.example.ns", CleanStart: true, Exclusive: true}
	c, _, _ := mustConn(t, n1, ns)
	if _, _, _, err := conn(t, n2, ns); !errors.Is(err, broker.ErrClientIDInUse) {
		t.Fatalf("a second registration of the namespace on another node: %v, want in use", err)
	}
	c.Disconnect(broker.DisconnectRequest{Graceful: true})
	eventually(t, "the namespace is free again on n2", func() bool {
		c2, _, _, err := conn(t, n2, ns)
		if err == nil {
			c2.Disconnect(broker.DisconnectRequest{Graceful: true})
		}
		return err == nil
	})
}
