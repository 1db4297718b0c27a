package broker

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// fakeCluster records what the core hands the cluster and answers as told.
type fakeCluster struct {
	mu       sync.Mutex
	routed   []string   // topics
	local    [][]string // Route's local argument per call
	nodes    int
	serve    func(local []string) []string
	accepted *Ticket
	retained []string // topic=payload
	retainT  *Ticket
}

func (f *fakeCluster) Route(m *message.Message, _ bool, local []string) Routed {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routed = append(f.routed, m.Topic)
	f.local = append(f.local, slices.Clone(local))
	r := Routed{Nodes: f.nodes, Accepted: f.accepted}
	if f.serve != nil {
		r.Serve = f.serve(local)
	} else {
		r.Serve = local
	}
	return r
}

func (f *fakeCluster) Retain(m *message.Message) *Ticket {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retained = append(f.retained, m.Topic+"="+string(m.Payload))
	return f.retainT
}

func TestClusterSharedGroupServedWhereTheClusterSays(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	fc := &fakeCluster{serve: func([]string) []string { return nil }}
	b.SetCluster(fc)
	member, mk, _ := connect(t, b, ConnectRequest{ClientID: "m"})
	subscribe(t, member, SubscribeRequest{Filter: "$share/g/a/#"})
	plain, pk, _ := connect(t, b, ConnectRequest{ClientID: "p"})
	subscribe(t, plain, SubscribeRequest{Filter: "a/+"})
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub"})

	publish(t, pub, "a/1", "elsewhere", 0, false)
	if len(fc.local) != 1 || fmt.Sprint(fc.local[0]) != "[g/a/#]" {
		t.Fatalf("Route's local groups: %q", fc.local)
	}
	wantPayloads(t, mk)              // the group went to another node
	wantPayloads(t, pk, "elsewhere") // plain subscriptions are always served here
	fc.serve = nil
	publish(t, pub, "a/1", "here", 0, false)
	wantPayloads(t, mk, "here")
}

func TestClusterDeliverRemoteServesListedGroupsOnly(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	b.SetCluster(&fakeCluster{})
	g1, k1, _ := connect(t, b, ConnectRequest{ClientID: "g1"})
	subscribe(t, g1, SubscribeRequest{Filter: "$share/one/x"})
	g2, k2, _ := connect(t, b, ConnectRequest{ClientID: "g2"})
	subscribe(t, g2, SubscribeRequest{Filter: "$share/two/x"})
	res := b.DeliverRemote(&message.Message{Topic: "x", Payload: []byte("m"), Sender: "alice"}, false, []string{"two/x"})
	if res.Matched != 1 {
		t.Fatalf("matched %d", res.Matched)
	}
	wantPayloads(t, k1)
	wantPayloads(t, k2, "m")
	if d := k2.deliveries()[0]; d.Msg.Sender != "alice" {
		t.Fatalf("sender %q", d.Msg.Sender)
	}
}

// A call whose service is on another node is not refused here; a forwarded call that finds no
// service is answered "no responders" by the node it reached.
func TestClusterCallsAcrossNodes(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	fc := &fakeCluster{nodes: 1}
	b.SetCluster(fc)
	caller, ck, _ := connect(t, b, ConnectRequest{ClientID: "caller"})
	subscribe(t, caller, SubscribeRequest{Filter: ResponsePrefix("caller") + "/#"})
	call := &message.Message{Topic: "$rpc/ns/proc", Payload: []byte("q"), QoS: 1}
	call.Props.ResponseTopic = ResponsePrefix("caller") + "/1"
	if _, err := caller.Publish(call); err != nil {
		t.Fatalf("a call served on another node was refused: %v", err)
	}
	wantPayloads(t, ck)
	fc.nodes = 0
	if _, err := caller.Publish(call); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("a call nobody serves: %v", err)
	}
	ck.reset()
	b.DeliverRemote(call, true, nil)
	d := ck.deliveries()
	if len(d) != 1 || !slices.Contains(d[0].Msg.Props.User, message.UserProperty{Key: ErrorProperty, Value: ErrNoResponders.Error()}) {
		t.Fatalf("forwarded call without a service: %+v", d)
	}
}

// A retained publish on a cluster node goes to the cluster's log, not the local store, and its
// acknowledgement waits for the log and for the nodes that took copies.
func TestClusterRetainedGoesThroughTheLog(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	fc := &fakeCluster{retainT: store.NewTicket(), accepted: store.NewTicket()}
	b.SetCluster(fc)
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub"})
	res := publish(t, pub, "r/1", "v", 1, true)
	if len(fc.retained) != 1 || fc.retained[0] != "r/1=v" || len(b.RetainedAll()) != 0 {
		t.Fatalf("retained %q, locally %d", fc.retained, len(b.RetainedAll()))
	}
	if res.Durable.Done() {
		t.Fatal("acknowledged before the log and the other nodes")
	}
	fc.retainT.Complete(nil)
	if res.Durable.Done() {
		t.Fatal("acknowledged before the other nodes accepted")
	}
	fc.accepted.Complete(errors.New("n2 gone"))
	if err := res.Durable.Wait(); err == nil {
		t.Fatal("a failed node acceptance did not fail the acknowledgement")
	}
	// Applying what the log committed sets it; an empty payload clears it; a snapshot replaces all.
	if err := b.ApplyRetained(&message.Message{Topic: "r/1", Payload: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyRetained(&message.Message{Topic: "$x/y", Payload: []byte("w")}); err != nil {
		t.Fatal(err)
	}
	if n := len(b.RetainedAll()); n != 2 {
		t.Fatalf("%d retained", n)
	}
	if err := b.ReplaceRetained([]*message.Message{{Topic: "s", Payload: []byte("z")}}); err != nil {
		t.Fatal(err)
	}
	if all := b.RetainedAll(); len(all) != 1 || all[0].Topic != "s" || b.Stats().Retained.Load() != 1 {
		t.Fatalf("after replace: %d, stats %d", len(all), b.Stats().Retained.Load())
	}
}

func TestInterestFiltersKeepShareGroups(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "a"})
	subscribe(t, c, SubscribeRequest{Filter: "$share/g/x/#"}, SubscribeRequest{Filter: "y"})
	if got := b.InterestFilters(); fmt.Sprint(got) != "[$share/g/x/# y]" {
		t.Fatalf("InterestFilters %q", got)
	}
	if got := b.Interest(); fmt.Sprint(got) != "[x/# y]" {
		t.Fatalf("Interest %q", got)
	}
}
