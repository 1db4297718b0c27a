package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
)

type fakeQuerier struct {
	ms  []*message.Message
	err error
	got []string
}

func (q *fakeQuerier) Query(_ context.Context, filter string) ([]*message.Message, error) {
	q.got = append(q.got, filter)
	return q.ms, q.err
}

// A query under a namespace designated elsewhere goes there; when that fails, the local copies
// answer, marked stale; other filters are answered here.
func TestQueryGoesToTheNamespacesQuerier(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub"})
	publish(t, pub, "bldg1/local", "l", 1, true)
	publish(t, pub, "other/x", "o", 1, true)
	up := &fakeQuerier{ms: []*message.Message{{Topic: "bldg1/upstream", Retain: true}}}
	b.SetQuerier("bldg1", up)
	all := auth.Unrestricted("")
	ctx := context.Background()

	ans, err := b.Query(ctx, all, "bldg1/#")
	if err != nil || ans.Stale || len(ans.Messages) != 1 || ans.Messages[0].Topic != "bldg1/upstream" {
		t.Fatalf("while the designated router answers: %+v %v", ans, err)
	}
	up.err = errors.New("link down")
	ans, err = b.Query(ctx, all, "bldg1/#")
	if err != nil || !ans.Stale || len(ans.Messages) != 1 || ans.Messages[0].Topic != "bldg1/local" {
		t.Fatalf("while the link is down: %+v %v, want the local copy, stale", ans, err)
	}
	ans, err = b.Query(ctx, all, "other/#")
	if err != nil || ans.Stale || len(ans.Messages) != 1 || len(up.got) != 2 {
		t.Fatalf("another namespace: %+v %v (querier asked %v)", ans, err, up.got)
	}
	if b.Stats().StaleQueries.Load() != 1 {
		t.Fatal("the stale answer was not counted")
	}
	none, _ := auth.NewPrincipal("u", "c", nil)
	if _, err := b.Query(ctx, none, "bldg1/#"); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("without a grant: %v", err)
	}
	if _, err := b.Query(ctx, all, "$share/g/x"); !errors.Is(err, ErrFilterInvalid) {
		t.Fatalf("a shared filter: %v", err)
	}
}

// tern/query is answered from any face with the JSON answer.
func TestQueryProcedure(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, k, _ := connect(t, b, ConnectRequest{ClientID: "caller"})
	publish(t, c, "q/a", "retained", 1, true)
	reply := ResponsePrefix("caller") + "/q"
	subscribe(t, c, SubscribeRequest{Filter: reply, QoS: 1})
	call := &message.Message{Topic: QueryProcedure, Payload: []byte("q/#"), QoS: 1}
	call.Props.ResponseTopic = reply
	call.Props.CorrelationData = []byte("7")
	if _, err := c.Publish(call); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(k.deliveries()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no answer")
		}
		time.Sleep(time.Millisecond)
	}
	d := k.deliveries()[0]
	ans, err := DecodeQueryAnswer(d.Msg.Payload)
	if err != nil || len(ans.Messages) != 1 || string(ans.Messages[0].Payload) != "retained" || string(d.Msg.Props.CorrelationData) != "7" {
		t.Fatalf("answer %s: %+v %v", d.Msg.Payload, ans, err)
	}
}

func FuzzDecodeQueryAnswer(f *testing.F) {
	f.Add(EncodeQueryAnswer(QueryAnswer{Stale: true, Messages: []*message.Message{{Topic: "a/b", Payload: []byte("x"), QoS: 1}}}))
	f.Add([]byte(`{"messages":[{"topic":"a/+","payload_base64":""}]}`))
	f.Add([]byte(`{"messages":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeQueryAnswer(b)
		if err != nil {
			return
		}
		for _, m := range a.Messages {
			if m.QoS > 2 || !m.Retain || m.Topic == "" {
				t.Fatalf("accepted %+v", m)
			}
		}
		back, err := DecodeQueryAnswer(EncodeQueryAnswer(a))
		if err != nil || len(back.Messages) != len(a.Messages) || back.Stale != a.Stale {
			t.Fatalf("round trip: %+v %v", back, err)
		}
	})
}
