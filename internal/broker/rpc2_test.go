package broker

import (
	"errors"
	"testing"

	"github.com/ternmq/tern/internal/message"
)

func TestSecondCallAnswered(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"svc": {"serve:calc/add"}, "caller": {"call:calc/add"}}}
	b, _ := authBroker(t, f, nil)
	svc, sk, _ := connect(t, b, login("svc", "s1"))
	subscribe(t, svc, SubscribeRequest{Filter: ProcedureTopic("calc", "add"), QoS: 1})
	caller, _, _ := connect(t, b, login("caller", "c"))
	reply := ResponsePrefix("c") + "/r"
	subscribe(t, caller, SubscribeRequest{Filter: reply, QoS: 1})
	answer := func(corr string) error {
		r := &message.Message{Topic: reply, Payload: []byte("3"), QoS: 1}
		r.Props.CorrelationData = []byte(corr)
		_, err := svc.Publish(r)
		return err
	}
	for i, corr := range []string{"c1", "c2"} {
		if _, err := caller.Publish(callMsg("calc", "add", reply, corr)); err != nil {
			t.Fatal(err)
		}
		if err := answer(corr); err != nil {
			t.Fatalf("answer %d: %v (deliveries %d)", i, err, len(sk.deliveries()))
		}
		if err := answer(corr); !errors.Is(err, ErrNotAuthorized) {
			t.Fatalf("second answer %d: %v", i, err)
		}
	}
}
