package memstore

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

func item(i int) store.Item {
	return store.Item{Msg: &message.Message{Topic: "t", Payload: []byte(fmt.Sprint(i))}, QoS: 1}
}

func TestQueueMatchesSliceModel(t *testing.T) {
	q := &Queue{}
	var model []string
	rng := rand.New(rand.NewPCG(1, 2))
	for step := 0; step < 20000; step++ {
		// Phases bias towards pushing then popping so the ring wraps, grows and shrinks.
		pushBias := 70
		if (step/2000)%2 == 1 {
			pushBias = 30
		}
		if rng.IntN(100) < pushBias {
			_ = q.Push(item(step))
			model = append(model, fmt.Sprint(step))
		} else {
			it, ok, _ := q.Front()
			_ = q.Pop()
			if ok != (len(model) > 0) {
				t.Fatalf("step %d: pop ok=%v with model len %d", step, ok, len(model))
			}
			if ok {
				if string(it.Msg.Payload) != model[0] {
					t.Fatalf("step %d: popped %s, want %s", step, it.Msg.Payload, model[0])
				}
				model = model[1:]
			}
		}
		if q.Len() != len(model) {
			t.Fatalf("step %d: len %d, model %d", step, q.Len(), len(model))
		}
	}
	for q.Len() > 0 {
		q.Pop()
	}
	if q.Bytes() != 0 || len(q.items) > 64 {
		t.Fatalf("drained queue keeps %d bytes, %d slots", q.Bytes(), len(q.items))
	}
}

func TestQueueOrderStrict(t *testing.T) {
	q := &Queue{}
	for i := 0; i < 1000; i++ {
		_ = q.Push(item(i))
		if i%3 == 0 {
			_ = q.Pop()
		}
	}
	prev := -1
	for q.Len() > 0 {
		it, _, _ := q.Front()
		_ = q.Pop()
		var v int
		fmt.Sscan(string(it.Msg.Payload), &v)
		if v <= prev {
			t.Fatalf("out of order: %d after %d", v, prev)
		}
		prev = v
	}
}

func TestQueueBytesAndFront(t *testing.T) {
	q := &Queue{}
	a, b := item(1), item(22)
	_ = q.Push(a)
	_ = q.Push(b)
	if q.Bytes() != int64(a.Size()+b.Size()) {
		t.Fatalf("bytes %d", q.Bytes())
	}
	f, ok, _ := q.Front()
	if !ok || string(f.Msg.Payload) != "1" || q.Len() != 2 {
		t.Fatal("front wrong or removed")
	}
	_ = q.Clear()
	if _, ok, _ := q.Front(); ok || q.Len() != 0 || q.Bytes() != 0 {
		t.Fatal("clear left items")
	}
}

func TestSessionsAndRetained(t *testing.T) {
	s := New()
	_ = s.Sessions().Put(store.SessionRecord{ClientID: "a", Subscriptions: []store.Subscription{{Filter: "x/#"}}})
	_ = s.Sessions().Put(store.SessionRecord{ClientID: "b"})
	q, _ := s.Sessions().Queue("a")
	_ = q.Push(item(1))
	q2, _ := s.Sessions().Queue("a")
	if q2.Len() != 1 {
		t.Fatal("queue not kept per session")
	}
	_ = s.Sessions().Delete("a")
	n := 0
	_ = s.Sessions().All(func(r store.SessionRecord) error { n++; return nil })
	if n != 1 {
		t.Fatalf("sessions after delete: %d", n)
	}
	if q3, _ := s.Sessions().Queue("a"); q3.Len() != 0 {
		t.Fatal("deleted session kept its queue")
	}
	_ = s.Retained().Set(&message.Message{Topic: "r"})
	_ = s.Retained().Set(&message.Message{Topic: "r", Payload: []byte("2")})
	var got []string
	_ = s.Retained().All(func(m *message.Message) error { got = append(got, string(m.Payload)); return nil })
	if fmt.Sprint(got) != "[2]" {
		t.Fatalf("retained: %v", got)
	}
	_ = s.Retained().Delete("r")
	got = nil
	_ = s.Retained().All(func(m *message.Message) error { got = append(got, m.Topic); return nil })
	if len(got) != 0 {
		t.Fatalf("retained after delete: %v", got)
	}
}
