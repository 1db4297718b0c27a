package linkprop

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

func users(kv ...string) []message.UserProperty {
	var out []message.UserProperty
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, message.UserProperty{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestSplit(t *testing.T) {
	tags, rest, err := Split(users("a", "1", Seq, "42", Origin, "site-a", "b", "2", QoS, "2", Sender, "alice/x"))
	if err != nil {
		t.Fatal(err)
	}
	if tags != (Tags{Origin: "site-a", Seq: 42, QoS2: true, Sender: "alice/x"}) {
		t.Errorf("tags %+v", tags)
	}
	if !slices.Equal(rest, users("a", "1", "b", "2")) {
		t.Errorf("rest %+v", rest)
	}
	if tags, rest, err := Split(nil); err != nil || tags != (Tags{}) || len(rest) != 0 {
		t.Errorf("no properties: %+v %v %v", tags, rest, err)
	}
	bad := [][]message.UserProperty{
		users(Seq, "0"), users(Seq, "-1"), users(Seq, "+1"), users(Seq, "01"), users(Seq, "x"),
		users(Seq, "18446744073709551616"), users(Seq, "1", Seq, "2"), users(QoS, "1"), users(QoS, "2", QoS, "2"),
		users(Origin, ""), users(Origin, "a/b"), users(Origin, strings.Repeat("a", 65)), users(Sender, "a", Sender, "b"),
		users(Sender, strings.Repeat("s", maxSender+1)),
	}
	for _, b := range bad {
		if _, _, err := Split(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v accepted (%v)", b, err)
		}
	}
}

// What Append writes, Split reads back.
func TestAppendSplit(t *testing.T) {
	in := Tags{Origin: "r1", Seq: 18446744073709551615, QoS2: true}
	ps, _ := in.Append(nil, nil)
	out, _, err := Split(fromPacket(ps))
	if err != nil || out != in {
		t.Fatalf("%+v -> %+v %v", in, out, err)
	}
	if ps, _ := (Tags{}).Append(nil, nil); len(ps) != 0 {
		t.Fatalf("empty tags wrote %v", ps)
	}
}

func fromPacket(ps []packet.UserProperty) []message.UserProperty {
	var out []message.UserProperty
	for _, p := range ps {
		out = append(out, message.UserProperty{Key: string(p.Key), Value: string(p.Value)})
	}
	return out
}

// FuzzSplit: whatever properties another router sends, Split never panics, keeps every property
// that is not the link's, and what it accepts survives Append and Split unchanged.
func FuzzSplit(f *testing.F) {
	f.Add("tern-seq=5\ntern-origin=a\nx=y")
	f.Add("tern-qos=2\ntern-sender=bob\ntern-seq=0")
	f.Add("tern-seq=99999999999999999999\n=\n")
	f.Fuzz(func(t *testing.T, s string) {
		var us []message.UserProperty
		for _, line := range strings.Split(s, "\n") {
			k, v, _ := strings.Cut(line, "=")
			us = append(us, message.UserProperty{Key: k, Value: v})
		}
		others := 0
		for _, u := range us {
			if !IsLinkKey(u.Key) {
				others++
			}
		}
		tags, rest, err := Split(slices.Clone(us))
		if err != nil {
			return
		}
		if len(rest) != others {
			t.Fatalf("kept %d properties, want %d", len(rest), others)
		}
		ps, _ := tags.Append(nil, nil)
		back, _, err := Split(append(fromPacket(ps), message.UserProperty{Key: Sender, Value: tags.Sender}))
		if err != nil || back != tags {
			t.Fatalf("%+v -> %+v %v", tags, back, err)
		}
	})
}
