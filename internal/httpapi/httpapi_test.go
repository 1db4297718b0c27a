package httpapi

import (
	"encoding/json"
	"testing"

	"github.com/ternmq/tern/internal/message"
)

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a/b", "quote\"", "back\\slash", "nl\n", "ü", "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var norm string
		_ = json.Unmarshal(want, &norm)
		if back != norm {
			t.Fatalf("%q round-tripped to %q, want %q", s, back, norm)
		}
	})
}

func TestEventPayloads(t *testing.T) {
	m := &message.Message{ID: 1 << 62, Topic: "t", Payload: []byte("hé"), Time: 1,
		Props: message.Properties{CorrelationData: []byte{1, 2}, User: []message.UserProperty{{Key: "k", Value: "1"}, {Key: "k", Value: "2"}}}}
	e := eventOf(m, true)
	if e.ID != "4611686018427387904" || e.Payload == nil || *e.Payload != "hé" || e.PayloadBase64 != "" ||
		e.CorrelationData != "AQI=" || len(e.UserProperties) != 2 || !e.Retain {
		t.Fatalf("event %+v", e)
	}
	m.Payload = []byte{0xff}
	if e := eventOf(m, false); e.Payload != nil || e.PayloadBase64 != "/w==" {
		t.Fatalf("binary payload %+v", e)
	}
	if !json.Valid(encodeEvent(m, false)) {
		t.Fatal("invalid JSON")
	}
}
