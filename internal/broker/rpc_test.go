package broker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ternmq/tern/internal/message"
)

func callMsg(ns, proc, reply, corr string) *message.Message {
	m := &message.Message{Topic: ProcedureTopic(ns, proc), Payload: []byte("args"), QoS: 1}
	m.Props.ResponseTopic, m.Props.CorrelationData = reply, []byte(corr)
	return m
}

func replyOf(t *testing.T, k *sink) (status, why string) {
	t.Helper()
	d := k.deliveries()
	if len(d) == 0 {
		t.Fatal("no reply")
	}
	m := d[len(d)-1].Msg
	return m.Props.UserValue(StatusProperty), m.Props.UserValue(ErrorProperty)
}

func TestCallsFailAtOnce(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	caller, ck, _ := connect(t, b, ConnectRequest{ClientID: "caller", CleanStart: true})
	reply := ResponsePrefix("caller") + "/r"
	subscribe(t, caller, SubscribeRequest{Filter: reply, QoS: 1})

	// Nobody serves it: the publish says so and the caller gets a failure reply.
	if _, err := caller.Publish(callMsg("svc", "echo", reply, "c1")); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("unserved call: %v", err)
	}
	if st, why := replyOf(t, ck); st != "-1" || why != "no responders" {
		t.Fatalf("failure reply %q %q", st, why)
	}

	// An offline persistent service does not count: calls are for services that are there.
	svc, _, _ := connect(t, b, ConnectRequest{ClientID: "svc", Expiry: 3600})
	subscribe(t, svc, SubscribeRequest{Filter: ProcedureTopic("svc", "echo"), QoS: 1})
	svc.Disconnect(DisconnectRequest{Graceful: true})
	if _, err := caller.Publish(callMsg("svc", "echo", reply, "c2")); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("offline service: %v", err)
	}

	// A service that goes away with a call pending fails it at once.
	svc, sk, _ := connect(t, b, ConnectRequest{ClientID: "svc", Expiry: 3600})
	ck.reset()
	if _, err := caller.Publish(callMsg("svc", "echo", reply, "c3")); err != nil {
		t.Fatal(err)
	}
	if n := len(sk.deliveries()); n != 1 {
		t.Fatalf("service got %d calls", n)
	}
	svc.Disconnect(DisconnectRequest{})
	if st, why := replyOf(t, ck); st != "-1" || why != "service disconnected" {
		t.Fatalf("after the service left: %q %q", st, why)
	}

	// An answered call is not failed later.
	svc, sk, _ = connect(t, b, ConnectRequest{ClientID: "svc", Expiry: 3600})
	ck.reset()
	caller.Publish(callMsg("svc", "echo", reply, "c4"))
	var call *message.Message
	for _, d := range sk.deliveries() { // the unanswered c3 is redelivered too (QoS 1)
		if string(d.Msg.Props.CorrelationData) == "c4" {
			call = d.Msg
		}
	}
	r := &message.Message{Topic: call.Props.ResponseTopic, Payload: []byte("ok"), QoS: 1}
	r.Props.CorrelationData = call.Props.CorrelationData
	r.Props.User = []message.UserProperty{{Key: StatusProperty, Value: "0"}}
	if _, err := svc.Publish(r); err != nil {
		t.Fatal(err)
	}
	svc.Disconnect(DisconnectRequest{})
	if d := ck.deliveries(); len(d) != 1 || string(d[0].Msg.Payload) != "ok" {
		t.Fatalf("caller got %d replies: %v", len(d), ck.payloads())
	}
}

func TestCallGrantsAndSharedServices(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{
		"svc":    {"serve:calc/#"},
		"caller": {"call:calc/add"},
	}}
	b, _ := authBroker(t, f, nil)
	s1, k1, _ := connect(t, b, login("svc", "s1"))
	s2, k2, _ := connect(t, b, login("svc", "s2"))
	for _, s := range []*Client{s1, s2} {
		subscribe(t, s, SubscribeRequest{Filter: "$share/calc/" + ProcedureTopic("calc", "add"), QoS: 1})
	}
	if res := s1.Subscribe([]SubscribeRequest{{Filter: ProcedureTopic("other", "x")}}); !errors.Is(res[0].Err, ErrNotAuthorized) {
		t.Fatalf("serving outside the serve grant: %v", res[0].Err)
	}
	caller, ck, _ := connect(t, b, login("caller", "c"))
	reply := ResponsePrefix("c") + "/r"
	subscribe(t, caller, SubscribeRequest{Filter: reply, QoS: 1}) // allowed: its own prefix
	for i := range 4 {
		if _, err := caller.Publish(callMsg("calc", "add", reply, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if n1, n2 := len(k1.deliveries()), len(k2.deliveries()); n1 != 2 || n2 != 2 {
		t.Fatalf("shared load %d/%d, want 2/2", n1, n2)
	}
	if _, err := caller.Publish(callMsg("calc", "mul", reply, "x")); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("call outside the call grant: %v", err)
	}
	// The service answers on the caller's response topic without a publish grant there.
	call := k1.deliveries()[0].Msg
	r := &message.Message{Topic: call.Props.ResponseTopic, Payload: []byte("3")}
	r.Props.CorrelationData = call.Props.CorrelationData
	if _, err := s1.Publish(r); err != nil {
		t.Fatalf("reply: %v", err)
	}
	if got := ck.payloads(); len(got) != 1 || got[0] != "3" {
		t.Fatalf("caller got %v", got)
	}
	// But it may not publish there otherwise.
	if _, err := s1.Publish(&message.Message{Topic: reply, Payload: []byte("spam")}); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("unsolicited reply: %v", err)
	}
	if sv := b.Services(); len(sv) != 1 || sv[0].Instances != 2 || sv[0].Namespace != "calc" {
		t.Fatalf("services %+v", sv)
	}
}
