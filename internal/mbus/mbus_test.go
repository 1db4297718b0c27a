package mbus_test

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/broker"
	. "github.com/ternmq/tern/internal/mbus"
	"github.com/ternmq/tern/internal/mbus/mbustest"
)

// newTestServer runs the mBus face on 127.0.0.1 over an in-memory core.
func newTestServer(t *testing.T) (*Server, *broker.Broker, string) {
	return newTestServerWith(t, Config{})
}

// newTestServerWith is newTestServer with the face's configuration.
func newTestServerWith(t *testing.T, cfg Config) (*Server, *broker.Broker, string) {
	b, err := broker.New(broker.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, cfg, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln, nil)
	t.Cleanup(func() {
		s.Close()
		b.Close()
	})
	return s, b, ln.Addr().String()
}

const (
	keyDestination = "org.mbus.method.tag.destination"
	keyIdentifier  = "org.mbus.method.tag.identifier"
	keySequence    = "org.mbus.method.tag.sequence"
	keyStatus      = "org.mbus.method.tag.status"
	keyPayload     = "org.mbus.method.tag.payload"
)

func TestCreateSubscribeEventAndCompression(t *testing.T) {
	_, _, addr := newTestServer(t)
	pub := mbustest.Dial(t, "tcp", addr)
	if r := pub.Create(map[string]any{"identifier": "org.example.pub", "compressions": []string{"none", "zlib"},
		"ping": map[string]int{"interval": 0}}); *r.Status != 0 || !strings.Contains(string(r.Payload), `"compression":"zlib"`) {
		t.Fatalf("create: %s", r.Payload)
	}
	sub := mbustest.Dial(t, "tcp", addr)
	if r := sub.Create(map[string]any{}); *r.Status != 0 || !strings.HasPrefix(sub.ID, "org.mbus.client.") {
		t.Fatalf("create with an assigned identifier: %s", r.Payload)
	}
	// Identifiers are unique while connected: the duplicate is refused and closed.
	dup := mbustest.Dial(t, "tcp", addr)
	if r := dup.Create(map[string]any{"identifier": "org.example.pub"}); *r.Status != -1 {
		t.Fatalf("duplicate identifier: %s", r.Payload)
	}
	seq := sub.Command(ServerID, "command.subscribe", map[string]string{"source": "org.example.pub", "event": EventAll})
	if st, _ := sub.ResultOf(seq); st != 0 {
		t.Fatalf("subscribe: %d", st)
	}
	seq = pub.NextSeq()
	pub.Write(Message{Type: TypeEvent, Destination: DestinationSubscribers, Identifier: "org.example.event.temp", Sequence: &seq, Payload: json.RawMessage(`{"c":21.5}`)})
	ev := sub.Next(func(m Message) bool { return m.Type == TypeEvent && m.Source == "org.example.pub" })
	if ev.Identifier != "org.example.event.temp" || string(ev.Payload) != `{"c":21.5}` {
		t.Fatalf("event %+v %s", ev, ev.Payload)
	}
	// Unicast and broadcast, and command.event (acknowledged).
	seq = pub.Command(ServerID, "command.event", map[string]any{keyDestination: sub.ID, keyIdentifier: "direct", keyPayload: map[string]int{"n": 1}})
	if st, _ := pub.ResultOf(seq); st != 0 {
		t.Fatalf("command.event: %d", st)
	}
	if ev := sub.Next(func(m Message) bool { return m.Type == TypeEvent && m.Identifier == "direct" }); ev.Source != "org.example.pub" {
		t.Fatalf("direct event %+v", ev)
	}
	seq = pub.NextSeq()
	pub.Write(Message{Type: TypeEvent, Destination: DestinationAll, Identifier: "hello.all", Sequence: &seq, Payload: json.RawMessage(`{}`)})
	sub.Next(func(m Message) bool { return m.Type == TypeEvent && m.Identifier == "hello.all" })
}

func TestCommandsBetweenClients(t *testing.T) {
	_, _, addr := newTestServer(t)
	callee := mbustest.Dial(t, "tcp", addr)
	callee.Create(map[string]any{"identifier": "org.example.calc"})
	seq := callee.Command(ServerID, "command.register", map[string]string{"command": "add"})
	if st, _ := callee.ResultOf(seq); st != 0 {
		t.Fatalf("register: %d", st)
	}
	caller := mbustest.Dial(t, "tcp", addr)
	caller.Create(map[string]any{"identifier": "org.example.user", "compressions": []string{"zlib"}})
	seq = caller.Command("org.example.calc", "add", map[string]int{"a": 1, "b": 2})
	call := callee.Next(func(m Message) bool { return m.Type == TypeCommand })
	if call.Source != "org.example.user" || call.Identifier != "add" || *call.Sequence != seq {
		t.Fatalf("call %+v", call)
	}
	rs := callee.Command(ServerID, "command.result", map[string]any{keyDestination: call.Source, keyIdentifier: "add",
		keySequence: *call.Sequence, keyStatus: 0, keyPayload: map[string]int{"sum": 3}})
	if st, p := caller.ResultOf(seq); st != 0 || string(p) != `{"sum":3}` {
		t.Fatalf("result: %d %s", st, p)
	}
	if st, _ := callee.ResultOf(rs); st != 0 {
		t.Fatalf("command.result answer: %d", st)
	}
	// A command nobody registered fails at once.
	seq = caller.Command("org.example.calc", "mul", map[string]int{})
	if st, _ := caller.ResultOf(seq); st != -1 {
		t.Fatalf("unregistered command: %d", st)
	}
	// Unregistering what is not registered is -1, not a crash.
	seq = callee.Command(ServerID, "command.unregister", map[string]string{"command": "nope"})
	if st, _ := callee.ResultOf(seq); st != -1 {
		t.Fatalf("unregister unknown: %d", st)
	}
	// A callee that goes away fails its pending call at once.
	seq = caller.Command("org.example.calc", "add", map[string]int{"a": 5})
	callee.Next(func(m Message) bool { return m.Type == TypeCommand })
	callee.NC.Close()
	if st, _ := caller.ResultOf(seq); st != -1 {
		t.Fatalf("call to a departed callee: %d", st)
	}
	// clients and status.
	seq = caller.Command(ServerID, "command.clients", map[string]any{})
	if st, p := caller.ResultOf(seq); st != 0 || !strings.Contains(string(p), "org.example.user") {
		t.Fatalf("clients: %d %s", st, p)
	}
}

func TestBadInputClosesOnlyThatClient(t *testing.T) {
	_, _, addr := newTestServer(t)
	good := mbustest.Dial(t, "tcp", addr)
	good.Create(map[string]any{"identifier": "good"})
	for name, raw := range map[string][]byte{
		"oversized length": {0x7f, 0xff, 0xff, 0xff},
		"invalid JSON":     mbustest.AppendFrame(nil, []byte("{not json"), false),
		"missing sequence": mbustest.AppendFrame(nil, []byte(`{"org.mbus.method.tag.type":"org.mbus.method.type.command","org.mbus.method.tag.destination":"org.mbus.server","org.mbus.method.tag.identifier":"command.create","org.mbus.method.tag.payload":{}}`), false),
		"not create first": mbustest.AppendFrame(nil, []byte(`{"org.mbus.method.tag.type":"org.mbus.method.type.command","org.mbus.method.tag.destination":"org.mbus.server","org.mbus.method.tag.identifier":"command.subscribe","org.mbus.method.tag.sequence":1,"org.mbus.method.tag.payload":{}}`), false),
	} {
		bad := mbustest.Dial(t, "tcp", addr)
		if _, err := bad.NC.Write(raw); err != nil {
			t.Fatal(err)
		}
		bad.StartReader()
		if !bad.Closed() {
			t.Errorf("%s: the client was not closed", name)
		}
	}
	// A bad zlib stream after a zlib create.
	bz := mbustest.Dial(t, "tcp", addr)
	bz.Create(map[string]any{"identifier": "bz", "compressions": []string{"zlib"}})
	bz.NC.Write([]byte{0, 0, 0, 8, 0, 0, 0, 4, 1, 2, 3, 4})
	if !bz.Closed() {
		t.Error("bad zlib: not closed")
	}
	// The good client carries on.
	seq := good.Command(ServerID, "command.clients", map[string]any{})
	if st, _ := good.ResultOf(seq); st != 0 {
		t.Fatal("the good client was affected")
	}
}

// TestPingThresholdAndClose: a client that stops pinging is closed with reason ping_threshold
// (a watcher hears it); command.close needs the admin grant, and closes with close_command.
func TestPingThresholdAndClose(t *testing.T) {
	_, _, addr := newTestServer(t)
	watcher := mbustest.Dial(t, "tcp", addr)
	watcher.Create(map[string]any{"identifier": "watcher"})
	seq := watcher.Command(ServerID, "command.subscribe", map[string]string{"source": ServerID, "event": EventDisconnected})
	watcher.ResultOf(seq)

	quiet := mbustest.Dial(t, "tcp", addr)
	quiet.Create(map[string]any{"identifier": "quiet", "ping": map[string]int{"interval": 100, "timeout": 50, "threshold": 1}})
	ev := watcher.Next(func(m Message) bool { return m.Identifier == EventDisconnected })
	if !strings.Contains(string(ev.Payload), `"source":"quiet"`) || !strings.Contains(string(ev.Payload), `"reason":"ping_threshold"`) {
		t.Fatalf("disconnected %s", ev.Payload)
	}
	if !quiet.Closed() {
		t.Fatal("the quiet client is still connected")
	}

	// A ping is answered with a pong.
	pinger := mbustest.Dial(t, "tcp", addr)
	pinger.Create(map[string]any{"identifier": "pinger"})
	s := pinger.NextSeq()
	pinger.Write(Message{Type: TypeEvent, Destination: ServerID, Identifier: EventPing, Sequence: &s, Payload: json.RawMessage(`{}`)})
	pinger.Next(func(m Message) bool { return m.Identifier == EventPong && m.Source == ServerID })

	// In open mode everybody is an admin: close works, on clients only.
	seq = watcher.Command(ServerID, "command.close", map[string]string{"source": ServerID})
	if st, _ := watcher.ResultOf(seq); st != -1 {
		t.Fatalf("closing the server: %d", st)
	}
	seq = watcher.Command(ServerID, "command.close", map[string]string{"source": "pinger"})
	if st, _ := watcher.ResultOf(seq); st != 0 {
		t.Fatalf("close: %d", st)
	}
	ev = watcher.Next(func(m Message) bool {
		return m.Identifier == EventDisconnected && strings.Contains(string(m.Payload), "pinger")
	})
	if !strings.Contains(string(ev.Payload), `"reason":"close_command"`) {
		t.Fatalf("close reason %s", ev.Payload)
	}
}

// The reader of a publishing client writes for its receivers itself (broker.Batch) but never
// waits on them: while a subscriber reads nothing and its socket is full, the publisher is still
// answered, and the subscriber later gets every event, whole and in order.
func TestPublisherNotHeldUpByFullSubscriber(t *testing.T) {
	// Nothing is dropped, and the subscriber that reads nothing is not cut off by the write
	// timeout while a loaded machine works through the events (it would be after 10 s).
	_, _, addr := newTestServerWith(t, Config{OutBufferBytes: 1 << 30, WriteTimeout: 5 * time.Minute})

	sub := mbustest.Dial(t, "tcp", addr)
	if err := sub.NC.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	sub.Create(map[string]any{"identifier": "org.example.sub", "ping": map[string]int{"interval": 0}})
	seq := sub.Command(ServerID, "command.subscribe", map[string]string{"source": "org.example.pub", "event": "org.example.big"})
	if st, _ := sub.ResultOf(seq); st != 0 {
		t.Fatalf("subscribe: %d", st)
	}
	pub := mbustest.Dial(t, "tcp", addr)
	pub.Create(map[string]any{"identifier": "org.example.pub", "ping": map[string]int{"interval": 0}})

	// The test client buffers 1,000 messages before it stops reading; 8,000 events of 1 KiB are
	// more than that and the kernel's socket buffers together.
	const n = 8000
	pad := strings.Repeat("x", 1000)
	// A publisher held up by the subscriber would block in these writes once its socket is full;
	// one deadline bounds them and the status answer below.
	deadline := time.Now().Add(2 * time.Minute)
	if err := pub.NC.SetWriteDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		seq := pub.NextSeq()
		payload, _ := json.Marshal(map[string]any{"i": i, "pad": pad})
		pub.Write(Message{Type: TypeEvent, Destination: DestinationSubscribers, Identifier: "org.example.big", Sequence: &seq, Payload: payload})
	}
	// The status result comes after the server has read and fanned out all n events, which takes
	// seconds under -race on a busy machine; a publisher held up by the subscriber would never get
	// it (the subscriber reads nothing until then), so a generous deadline still catches that.
	seq = pub.Command(ServerID, "command.status", map[string]any{})
	if st, _ := pub.ResultWithin(time.Until(deadline), seq); st != 0 {
		t.Fatalf("status: %d", st)
	}
	for i := range n {
		ev := sub.Next(func(m Message) bool { return m.Type == TypeEvent && m.Identifier == "org.example.big" })
		var got struct{ I int }
		if err := json.Unmarshal(ev.Payload, &got); err != nil || got.I != i {
			t.Fatalf("event %d arrived as %s (%v)", i, ev.Payload[:min(len(ev.Payload), 20)], err)
		}
	}
}

// Instances of one service opt in to sharing with "service" on command.register: each call to
// the service goes to one of them, the load is spread, a departed instance gets no more calls,
// and status shows the registration.
func TestSharedServiceInstances(t *testing.T) {
	_, _, addr := newTestServer(t)
	instances := map[string]*mbustest.Client{}
	for _, id := range []string{"org.example.svc.1", "org.example.svc.2"} {
		c := mbustest.Dial(t, "tcp", addr)
		c.Create(map[string]any{"identifier": id})
		seq := c.Command(ServerID, "command.register", map[string]string{"command": "work", "service": "org.example.svc"})
		if st, _ := c.ResultOf(seq); st != 0 {
			t.Fatalf("%s: register: %d", id, st)
		}
		instances[id] = c
	}
	caller := mbustest.Dial(t, "tcp", addr)
	caller.Create(map[string]any{"identifier": "org.example.caller"})
	seq := caller.Command(ServerID, "command.subscribe", map[string]string{"source": ServerID, "event": EventDisconnected})
	if st, _ := caller.ResultOf(seq); st != 0 {
		t.Fatalf("subscribe: %d", st)
	}

	// call makes one call and has whichever instance got it answer with its identifier.
	call := func() string {
		t.Helper()
		seq := caller.Command("org.example.svc", "work", map[string]int{})
		var got *mbustest.Client
		var cmd Message
		var in1, in2 chan Message // nil (never ready) for an instance that left
		if c := instances["org.example.svc.1"]; c != nil {
			in1 = c.In
		}
		if c := instances["org.example.svc.2"]; c != nil {
			in2 = c.In
		}
		select {
		case cmd = <-in1:
			got = instances["org.example.svc.1"]
		case cmd = <-in2:
			got = instances["org.example.svc.2"]
		case <-time.After(5 * time.Second):
			t.Fatal("no instance got the call")
		}
		if cmd.Type != TypeCommand || cmd.Identifier != "work" || cmd.Source != "org.example.caller" {
			t.Fatalf("instance got %+v", cmd)
		}
		got.Command(ServerID, "command.result", map[string]any{keyDestination: cmd.Source, keyIdentifier: "work",
			keySequence: *cmd.Sequence, keyStatus: 0, keyPayload: map[string]string{"by": got.ID}})
		st, p := caller.ResultOf(seq)
		var by struct{ By string }
		if err := json.Unmarshal(p, &by); st != 0 || err != nil || by.By != got.ID {
			t.Fatalf("result %d %s, want one from %s", st, p, got.ID)
		}
		got.Next(func(m Message) bool { return m.Type == TypeResult }) // command.result's own answer
		return by.By
	}
	counts := map[string]int{}
	for range 10 {
		counts[call()]++
	}
	if counts["org.example.svc.1"] == 0 || counts["org.example.svc.2"] == 0 {
		t.Fatalf("calls were not shared: %v", counts)
	}

	seq = caller.Command(ServerID, "command.status", map[string]any{})
	if st, p := caller.ResultOf(seq); st != 0 || !strings.Contains(string(p), `"service":"org.example.svc"`) {
		t.Fatalf("status does not show the shared registration: %s", p)
	}
	// Unregistering needs the same service: the plain command is not registered.
	one := instances["org.example.svc.1"]
	seq = one.Command(ServerID, "command.unregister", map[string]string{"command": "work"})
	if st, _ := one.ResultOf(seq); st != -1 {
		t.Fatalf("unregister without the service: %d, want -1", st)
	}
	one.NC.Close()
	delete(instances, "org.example.svc.1")
	// Once it is announced gone, no call goes its way. (A call that reached it before would
	// fail at once, as any call to a departed callee.)
	caller.Next(func(m Message) bool {
		return m.Identifier == EventDisconnected && strings.Contains(string(m.Payload), "org.example.svc.1")
	})
	for range 4 {
		if by := call(); by != "org.example.svc.2" {
			t.Fatalf("a call went to %s after it left", by)
		}
	}
	two := instances["org.example.svc.2"]
	seq = two.Command(ServerID, "command.unregister", map[string]string{"command": "work", "service": "org.example.svc"})
	if st, _ := two.ResultOf(seq); st != 0 {
		t.Fatalf("unregister: %d", st)
	}
	seq = caller.Command("org.example.svc", "work", map[string]int{})
	if st, _ := caller.ResultOf(seq); st != -1 {
		t.Fatalf("a call with no instance left: %d, want -1 at once", st)
	}
}
