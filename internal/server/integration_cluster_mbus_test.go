package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mbus"
	"github.com/ternmq/tern/internal/mbus/mbustest"
	"github.com/ternmq/tern/internal/server"
)

// withMBus opens the mBus TCP listener.
func withMBus(c *config.Config) { c.Listen.MBus = "127.0.0.1:0" }

// mbusClient connects an mBus client with identifier id to srv.
func mbusClient(t *testing.T, srv *server.Server, id string) *mbustest.Client {
	t.Helper()
	c := mbustest.Dial(t, "tcp", srv.Addr("mbus"))
	if m := c.Create(map[string]any{"identifier": id}); *m.Status != 0 {
		t.Fatalf("create %s: %s", id, m.Payload)
	}
	return c
}

// mbusCommand sends a command and waits for its result.
func mbusCommand(t *testing.T, c *mbustest.Client, dest, cmd string, payload any) (int, json.RawMessage) {
	t.Helper()
	return c.ResultOf(c.Command(dest, cmd, payload))
}

// untilCalled repeats an mBus call until it is answered 0: until the callee's node told the
// caller's its procedure, the call fails at once ("no responders", -1).
func untilCalled(t *testing.T, c *mbustest.Client, dest, cmd string, payload any) json.RawMessage {
	t.Helper()
	deadline := time.Now().Add(4 * waitTimeout)
	for {
		st, p := mbusCommand(t, c, dest, cmd, payload)
		if st == 0 {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: status %d %s", dest, cmd, st, p)
		}
		time.Sleep(20 * time.Millisecond) // a pause between retries, not synchronisation
	}
}

// mBus across three nodes: a daemon's command on n1 answers an mBus client on n2 and an HTTP
// call on n3; an event published on n2 reaches a subscriber on n1; and a call from n2 pending
// when the daemon leaves fails at once.
func TestClusterMBusAcrossNodes(t *testing.T) {
	nodes := threeNodes(t, withMBus)
	daemon := mbusClient(t, nodes[0], "org.example.daemon")
	for _, cmd := range []string{"echo", "hang"} {
		if st, _ := mbusCommand(t, daemon, mbus.ServerID, "command.register", map[string]string{"command": cmd}); st != 0 {
			t.Fatalf("register %s: %d", cmd, st)
		}
	}
	hung := make(chan struct{}, 1)
	go func() {
		for c := range daemon.In {
			if c.Type != mbus.TypeCommand {
				continue
			}
			if c.Identifier == "hang" {
				hung <- struct{}{}
				continue
			}
			daemon.Command(mbus.ServerID, "command.result", map[string]any{
				"org.mbus.method.tag.destination": c.Source, "org.mbus.method.tag.identifier": c.Identifier,
				"org.mbus.method.tag.sequence": *c.Sequence, "org.mbus.method.tag.status": 0,
				"org.mbus.method.tag.payload": map[string]string{"echo": string(c.Payload)}})
		}
	}()

	caller := mbusClient(t, nodes[1], "org.example.caller")
	if p := untilCalled(t, caller, "org.example.daemon", "echo", map[string]int{"n": 2}); !strings.Contains(string(p), `{\"n\":2}`) {
		t.Fatalf("mBus call from n2: %s", p)
	}

	deadline := time.Now().Add(4 * waitTimeout)
	for {
		resp, body := httpDo(t, "POST", "http://"+nodes[2].Addr("http")+"/v1/call/org.example.daemon/echo?timeout=5s", `{"n":3}`)
		if resp.StatusCode == http.StatusOK && strings.Contains(body, `{\"n\":3}`) {
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("HTTP call on n3: %d %s", resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond) // a pause between retries, not synchronisation
	}

	listener := mbusClient(t, nodes[0], "org.example.listener")
	if st, _ := mbusCommand(t, listener, mbus.ServerID, "command.subscribe", map[string]string{"source": mbus.SourceAll, "event": "tick"}); st != 0 {
		t.Fatalf("subscribe: %d", st)
	}
	sensor := mbusClient(t, nodes[1], "org.example.sensor")
	keepDoing(t, func(context.Context) {
		seq := sensor.NextSeq()
		sensor.Write(mbus.Message{Type: mbus.TypeEvent, Destination: mbus.DestinationSubscribers, Identifier: "tick",
			Sequence: &seq, Payload: json.RawMessage(`{"t":1}`)})
	})
	ev := listener.Next(func(m mbus.Message) bool { return m.Type == mbus.TypeEvent && m.Identifier == "tick" })
	if ev.Source != "org.example.sensor" || string(ev.Payload) != `{"t":1}` {
		t.Fatalf("event on n1: %+v", ev)
	}

	// The procedure is known on n2 (echo was answered), so this call goes to n1 and waits there.
	seq := caller.Command("org.example.daemon", "hang", map[string]any{})
	select {
	case <-hung:
	case <-time.After(waitTimeout):
		t.Fatal("the daemon did not receive the pending call")
	}
	start := time.Now()
	daemon.NC.Close()
	if st, _ := caller.ResultOf(seq); st != -1 || time.Since(start) > waitTimeout {
		t.Fatalf("pending call after the daemon left: status %d after %v", st, time.Since(start))
	}
}

// command.clients and command.status answer for every node's mBus clients, each marked in
// command.status with its node; command.client finds a client of another node.
func TestClusterMBusClientsListsEveryNode(t *testing.T) {
	a, b := twoNodes(t, withMBus)
	one := mbusClient(t, a, "org.example.one")
	if st, _ := mbusCommand(t, one, mbus.ServerID, "command.register", map[string]string{"command": "work"}); st != 0 {
		t.Fatalf("register: %d", st)
	}
	two := mbusClient(t, b, "org.example.two")
	want := []string{"org.example.one", "org.example.two"}
	eventually(t, 4*waitTimeout, "both clients listed on b", func() bool {
		_, p := mbusCommand(t, two, mbus.ServerID, "command.clients", map[string]any{})
		var ids []string
		return json.Unmarshal(p, &ids) == nil && slices.Equal(ids, want)
	})
	type info struct {
		Source, Node string
		Commands     []map[string]string
	}
	var st []info
	if _, p := mbusCommand(t, two, mbus.ServerID, "command.status", map[string]any{}); json.Unmarshal(p, &st) != nil || len(st) != 2 ||
		st[0].Source != "org.example.one" || st[0].Node != "a" || len(st[0].Commands) != 1 || st[0].Commands[0]["identifier"] != "work" ||
		st[1].Source != "org.example.two" || st[1].Node != "b" {
		t.Fatalf("command.status on b: %s", p)
	}
	var ci info
	if code, p := mbusCommand(t, two, mbus.ServerID, "command.client", map[string]string{"source": "org.example.one"}); code != 0 ||
		json.Unmarshal(p, &ci) != nil || ci.Node != "a" {
		t.Fatalf("command.client on b: %d %s", code, p)
	}
	// And the other way, on a.
	eventually(t, 4*waitTimeout, "both clients listed on a", func() bool {
		_, p := mbusCommand(t, one, mbus.ServerID, "command.clients", map[string]any{})
		var ids []string
		return json.Unmarshal(p, &ids) == nil && slices.Equal(ids, want)
	})
	// A client that leaves drops out of the other node's listing.
	two.NC.Close()
	eventually(t, 4*waitTimeout, "b's client gone from a's listing", func() bool {
		_, p := mbusCommand(t, one, mbus.ServerID, "command.clients", map[string]any{})
		var ids []string
		return json.Unmarshal(p, &ids) == nil && slices.Equal(ids, want[:1])
	})
}
