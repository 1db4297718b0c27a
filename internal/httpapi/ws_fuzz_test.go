package httpapi

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
)

type discardSink struct{}

func (discardSink) Send(broker.Delivery) broker.SendResult { return broker.Sent }
func (discardSink) Release(uint16)                         {}
func (discardSink) Close(error)                            {}
func (discardSink) Drained() <-chan struct{}               { return nil }

// FuzzWebSocketOps: any frame a WebSocket client sends decodes to an op that is answered (an
// error with a code for anything wrong), never a panic.
func FuzzWebSocketOps(f *testing.F) {
	for _, s := range []string{
		`{"op":"sub","filter":"a/#","qos":1,"id":1}`,
		`{"op":"unsub","filter":"a/#"}`,
		`{"op":"pub","topic":"a/b","payload":"x","qos":1,"retain":true,"expiry":60,"user_properties":[{"key":"k","value":"v"}]}`,
		`{"op":"pub","topic":"a/b","payload_base64":"!!"}`,
		`{"op":"ack","ack":7}`,
		`{"op":"auth","username":"u","password":"p"}`,
		`{"op":"nope"}`, `[]`, `{"op":"sub","filter":"$share//x"}`,
	} {
		f.Add([]byte(s))
	}
	b, err := broker.New(broker.DefaultConfig(), nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = b.Close() })
	s := New(b, Config{}, nil)
	p := auth.Unrestricted("fz")
	c, _, err := b.Connect(context.Background(), broker.ConnectRequest{ClientID: "fz", Principal: p, Sink: discardSink{}})
	if err != nil {
		f.Fatal(err)
	}
	c.Start()
	f.Fuzz(func(t *testing.T, frame []byte) {
		var q wsRequest
		if json.Unmarshal(frame, &q) != nil {
			return
		}
		reply := s.wsHandle(c, p, &q)
		if r, ok := reply.(wsReply); ok && r.Op == "error" && r.Code == "" {
			t.Fatalf("%s: an error without a code", frame)
		}
	})
}
