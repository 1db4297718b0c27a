package broker

import (
	"context"
	"testing"

	"github.com/ternmq/tern/internal/message"
)

// nullSink takes deliveries and keeps nothing, so a benchmark measures the core alone.
type nullSink struct{ got int }

func (k *nullSink) Send(Delivery) SendResult { k.got++; return Sent }
func (k *nullSink) Release(uint16)           {}
func (k *nullSink) Close(error)              {}
func (k *nullSink) Drained() <-chan struct{} { return nil }

// BenchmarkCallRoundTrip is one call and its reply through the core: the caller publishes to
// $rpc/b/echo with its response topic, the service answers there.
//
//	go test -run '^$' -bench CallRoundTrip -benchmem ./internal/broker
func BenchmarkCallRoundTrip(b *testing.B) {
	br, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	connect := func(id string, k Sink) *Client {
		c, _, err := br.Connect(context.Background(), ConnectRequest{ClientID: id, CleanStart: true, Sink: k})
		if err != nil {
			b.Fatal(err)
		}
		c.Start()
		return c
	}
	svcSink, callerSink := &nullSink{}, &nullSink{}
	svc := connect("svc", svcSink)
	caller := connect("caller", callerSink)
	reply := ResponsePrefix("caller") + "/r"
	svc.Subscribe([]SubscribeRequest{{Filter: "$rpc/b/echo"}})
	caller.Subscribe([]SubscribeRequest{{Filter: reply}})
	payload := make([]byte, 128)
	corr := []byte("42")
	call := &message.Message{}
	answer := &message.Message{}
	b.ReportAllocs()
	for b.Loop() {
		*call = message.Message{Topic: "$rpc/b/echo", Payload: payload}
		call.Props.ResponseTopic, call.Props.CorrelationData = reply, corr
		if _, err := caller.Publish(call); err != nil {
			b.Fatal(err)
		}
		*answer = message.Message{Topic: reply, Payload: payload}
		answer.Props.CorrelationData = corr
		if _, err := svc.Publish(answer); err != nil {
			b.Fatal(err)
		}
	}
	if svcSink.got < b.N || callerSink.got < b.N {
		b.Fatalf("%d calls and %d replies delivered for %d round trips", svcSink.got, callerSink.got, b.N)
	}
}
