package message

import (
	"testing"
	"time"
)

func TestCloneOwnsItsMemory(t *testing.T) {
	buf := []byte("a/b/chello")
	m := &Message{
		Topic:   string(buf[:5]),
		Payload: buf[5:],
		Sender:  "alice",
		Props: Properties{
			ContentType: "text/plain", ResponseTopic: "r/1", CorrelationData: []byte{1, 2},
			User: []UserProperty{{"k", "v"}},
		},
		QoS: 1,
	}
	c := m.Clone()
	copy(buf, "XXXXXXXXXX")
	m.Props.CorrelationData[0] = 9
	m.Props.User[0].Key = "changed"
	if c.Topic != "a/b/c" || string(c.Payload) != "hello" || c.Sender != "alice" {
		t.Fatalf("clone shares memory with original: %q %q %q", c.Topic, c.Payload, c.Sender)
	}
	if c.Props.CorrelationData[0] != 1 || c.Props.User[0].Key != "k" || c.Props.ContentType != "text/plain" {
		t.Fatalf("clone properties changed: %+v", c.Props)
	}
	if c.QoS != 1 {
		t.Fatalf("qos lost")
	}
	// Appending to the clone's payload must not overwrite the fields stored after it.
	_ = append(c.Payload, 'Z')
	if c.Sender != "alice" {
		t.Fatalf("payload append overwrote sender: %q", c.Sender)
	}
}

func TestCloneKeepsNilCorrelationData(t *testing.T) {
	c := (&Message{Topic: "t"}).Clone()
	if c.Props.CorrelationData != nil || c.Props.User != nil {
		t.Fatalf("nil fields became non-nil: %+v", c.Props)
	}
}

func TestRemainingExpiry(t *testing.T) {
	now := time.Unix(1000, 0).UnixNano()
	cases := []struct {
		expires int64
		want    uint32
		ok      bool
	}{
		{0, 0, false},
		{now + int64(10*time.Second), 10, true},
		{now + int64(9500*time.Millisecond), 10, true},
		{now - 1, 0, true},
	}
	for _, c := range cases {
		m := &Message{Expires: c.expires}
		got, ok := m.RemainingExpiry(now)
		if got != c.want || ok != c.ok {
			t.Errorf("expires %d: got %d,%v want %d,%v", c.expires, got, ok, c.want, c.ok)
		}
	}
	if !(&Message{Expires: now}).Expired(now) || (&Message{}).Expired(now) {
		t.Fatal("Expired wrong")
	}
}

func TestFrameCacheFirstStoreWins(t *testing.T) {
	var m Message
	if m.Frames.Load(3) != nil {
		t.Fatal("empty cache returned a frame")
	}
	got := m.Frames.Store(3, []byte("a"))
	again := m.Frames.Store(3, []byte("b"))
	if string(got) != "a" || string(again) != "a" || string(m.Frames.Load(3)) != "a" {
		t.Fatalf("store/load: %q %q", got, again)
	}
	if m.Clone().Frames.Load(3) != nil {
		t.Fatal("Clone copied the frame cache")
	}
	m.Frames.Reset()
	if m.Frames.Load(3) != nil {
		t.Fatal("Reset kept a frame")
	}
}
