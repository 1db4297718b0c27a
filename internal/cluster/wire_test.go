package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/ternmq/tern/internal/message"
)

func sampleMessage() *message.Message {
	m := &message.Message{ID: 7, Topic: "a/b", Payload: []byte("pay"), QoS: 1, Retain: true, Time: 5, Expires: 9,
		ExpiryInterval: 4, Sender: "alice"}
	m.Props = message.Properties{PayloadFormat: 1, ContentType: "text/plain", ResponseTopic: "r",
		CorrelationData: []byte{}, User: []message.UserProperty{{Key: "k", Value: "v"}}}
	return m
}

// sampleFrames has one frame of every type.
func sampleFrames() [][]byte {
	m := sampleMessage()
	return [][]byte{
		appendHello(nil, "n1"),
		appendMsg(nil, 3, true, []string{"g/x"}, 7, m),
		appendAck(nil, 3, "no"),
		appendInterest(nil, []string{"a/#", "$share/g/x"}, 1<<10),
		firstFrame(appendInterest(nil, []string{"a/#", "$share/g/x"}, 8)), // a part
		appendProgress(nil, fPing, progress{1, 2, 3}),
		appendProgress(nil, fPong, progress{4, 5, 6}),
		appendJoin(nil, 1, "n4", "127.0.0.1:7004"),
		appendWrite(nil, 2, encodePut("users", "u", []byte("x"))),
		appendLeave(nil, 3, "n2"),
		appendRead(nil, 6),
		appendReply(nil, 4, 99, "127.0.0.1:7001", "not"),
		appendReplyBoot(nil, 5, 0, "", "no cluster", &bootInfo{Node: "n3", Vote: "n1", Withdrawn: true}),
	}
}

func TestFramesRoundTrip(t *testing.T) {
	for _, b := range sampleFrames() {
		if n := binary.BigEndian.Uint32(b); int(n) != len(b)-4 {
			t.Fatalf("frame %q: length %d of %d", b[4], n, len(b)-4)
		}
		whole, err := decodeFrame(b[4:])
		if err != nil {
			t.Fatalf("frame %q: %v", b[4], err)
		}
		for i := 5; i < len(b); i++ {
			if f, err := decodeFrame(b[4:i]); err == nil {
				// A reply's boot answer is optional: cut off whole, the rest is a reply without one.
				if whole.Boot != nil && f.Boot == nil && f.Err == whole.Err {
					continue
				}
				t.Fatalf("frame %q cut at %d decoded", b[4], i)
			}
		}
	}
	f, _ := decodeFrame(sampleFrames()[1][4:])
	m := sampleMessage()
	if f.Seq != 3 || !f.Answerable || f.Origin != 7 || len(f.Groups) != 1 || f.Msg.Topic != m.Topic ||
		!bytes.Equal(f.Msg.Payload, m.Payload) || f.Msg.Sender != "alice" || f.Msg.Expires != 9 || !f.Msg.Retain ||
		f.Msg.Props.CorrelationData == nil || f.Msg.Props.User[0].Value != "v" || f.Msg.Props.ContentType != "text/plain" {
		t.Fatalf("message frame decoded as %+v / %+v", f, f.Msg)
	}
	noCorr := sampleMessage()
	noCorr.Props.CorrelationData = nil
	f, _ = decodeFrame(appendMsg(nil, 0, false, nil, 0, noCorr)[4:])
	if f.Msg.Props.CorrelationData != nil {
		t.Fatal("absent correlation data came back present")
	}
}

// firstFrame is the first of the frames in b.
func firstFrame(b []byte) []byte { return b[:4+binary.BigEndian.Uint32(b)] }

// An interest set larger than a part goes as fPart frames of at most about part bytes, then one
// fInterest; together they carry the set in order. One that fits is a single fInterest frame.
func TestInterestInParts(t *testing.T) {
	fs := make([]string, 1000)
	for i := range fs {
		fs[i] = fmt.Sprintf("devices/%d/cmd", i)
	}
	const part = 512
	b := appendInterest(nil, fs, part)
	var got []string
	var frames int
	for len(b) > 0 {
		n := int(binary.BigEndian.Uint32(b))
		f, err := decodeFrame(b[4 : 4+n])
		if err != nil {
			t.Fatal(err)
		}
		b = b[4+n:]
		frames++
		if n > part+16 {
			t.Fatalf("frame %d is %d bytes, parts are about %d", frames, n, part)
		}
		if want := byte(fPart); len(b) == 0 {
			if f.Type != fInterest {
				t.Fatalf("the last frame is %q, want the fInterest that completes the set", f.Type)
			}
		} else if f.Type != want {
			t.Fatalf("frame %d is %q before the end, want a part", frames, f.Type)
		}
		got = append(got, f.Filters...)
	}
	if frames < 2 || !slices.Equal(got, fs) {
		t.Fatalf("%d frames carried %d filters, want the %d in order", frames, len(got), len(fs))
	}
	one := appendInterest(nil, fs[:3], part)
	if f, err := decodeFrame(one[4:]); err != nil || f.Type != fInterest || len(f.Filters) != 3 ||
		int(binary.BigEndian.Uint32(one)) != len(one)-4 {
		t.Fatalf("a small set: %+v, %v", f, err)
	}
	// An empty set is one empty fInterest (interest withdrawn).
	if f, err := decodeFrame(appendInterest(nil, nil, part)[4:]); err != nil || f.Type != fInterest || len(f.Filters) != 0 {
		t.Fatalf("the empty set: %+v, %v", f, err)
	}
}

func TestCommandsAndStateRoundTrip(t *testing.T) {
	s := state{Records: []Record{{"users", "a", []byte("1")}}, Retained: []*message.Message{sampleMessage()}}
	for _, cmd := range [][]byte{encodePut("users", "a", nil), encodeDelete("groups", "g"), encodeRetain(sampleMessage()),
		append([]byte{cmdSeed}, appendState(nil, s)...), {cmdNoop}} {
		if _, err := decodeCommand(cmd); err != nil {
			t.Fatalf("command %d: %v", cmd[0], err)
		}
	}
	if _, err := decodeCommand([]byte{99}); err == nil {
		t.Fatal("unknown command decoded")
	}
	got, err := decodeState(appendState(nil, s))
	if err != nil || len(got.Records) != 1 || len(got.Retained) != 1 || got.Retained[0].Topic != "a/b" {
		t.Fatalf("state %+v %v", got, err)
	}
}

// FuzzDecode: frames, commands and snapshots from a node (or anybody reaching the cluster
// listener) never crash the decoder.
func FuzzDecode(f *testing.F) {
	for _, b := range sampleFrames() {
		f.Add(b[4:])
	}
	f.Add(encodeRetain(sampleMessage()))
	f.Add(encodeAppend("mbox/bob", []byte(`{"from":"alice"}`)))
	f.Add(encodeSwap("mbox/bob", "00000000000000000012", []byte("old"), []byte("new"), false))
	f.Add(encodeSwap("mbox/bob", "00000000000000000012", []byte("old"), nil, true))
	f.Add(appendState(nil, state{Records: []Record{{"u", "k", nil}}}))
	for _, cmd := range sampleSessionCommands() { // every op kind, subscriptions' included
		f.Add(cmd)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeFrame(b)
		_, _ = decodeCommand(b)
		_, _ = decodeState(b)
	})
}

// An appended record's command decodes to its namespace and value.
func TestAppendCommandRoundTrip(t *testing.T) {
	c, err := decodeCommand(encodeAppend("mbox/bob", []byte("v")))
	if err != nil || c.Kind != cmdAppend || c.NS != "mbox/bob" || string(c.Value) != "v" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := decodeCommand(encodeAppend("mbox/bob", []byte("v"))[:4]); err == nil {
		t.Fatal("a truncated append decoded")
	}
}

// A swap's command decodes to what was encoded; a delete carries no new value, and unknown flags
// are refused.
func TestSwapCommandRoundTrip(t *testing.T) {
	c, err := decodeCommand(encodeSwap("mbox/bob", "k", []byte("a"), []byte("b"), false))
	if err != nil || c.Kind != cmdSwap || c.NS != "mbox/bob" || c.Key != "k" || string(c.Old) != "a" || string(c.Value) != "b" || c.Flags != 0 {
		t.Fatalf("put: %+v %v", c, err)
	}
	c, err = decodeCommand(encodeSwap("mbox/bob", "k", []byte("a"), []byte("ignored"), true))
	if err != nil || c.Flags != swapDelete || len(c.Value) != 0 {
		t.Fatalf("delete: %+v %v", c, err)
	}
	bad := encodeSwap("mbox/bob", "k", []byte("a"), nil, true)
	bad[len(bad)-2] = 2 // the flags byte, before the empty value's length
	if _, err := decodeCommand(bad); err == nil {
		t.Fatal("a swap with an unknown flag decoded")
	}
}
