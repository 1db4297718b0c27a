package cluster

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/memstore"
)

// waitTimeout bounds every wait for something that must happen.
const waitTimeout = 20 * time.Second

// fakeCore stands in for the broker: it keeps retained messages and records deliveries.
type fakeCore struct {
	mu        sync.Mutex
	retained  map[string]string
	delivered []string // topic=payload[groups]
	filters   []string
	watch     []func()
	restores  int
	tick      chan struct{}
	// hold, when set, is the durability ticket of every delivery (a node slow to accept).
	hold *store.Ticket
	// applying, when set, is told of each retained message applied, which then waits for
	// release (a state machine slow to apply).
	applying, release chan struct{}
}

func newFakeCore() *fakeCore {
	return &fakeCore{retained: map[string]string{}, tick: make(chan struct{}, 1)}
}

func (c *fakeCore) poke() {
	select {
	case c.tick <- struct{}{}:
	default:
	}
}

func (c *fakeCore) ApplyRetained(m *message.Message) error {
	c.mu.Lock()
	applying, release := c.applying, c.release
	c.mu.Unlock()
	if applying != nil {
		applying <- struct{}{}
		<-release
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(m.Payload) == 0 {
		delete(c.retained, m.Topic)
	} else {
		c.retained[m.Topic] = string(m.Payload)
	}
	c.poke()
	return nil
}

func (c *fakeCore) RetainedAll() []*message.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*message.Message
	for t, p := range c.retained {
		out = append(out, &message.Message{Topic: t, Payload: []byte(p), Retain: true})
	}
	return out
}

func (c *fakeCore) ReplaceRetained(ms []*message.Message) error {
	c.mu.Lock()
	c.retained = map[string]string{}
	c.restores++
	c.mu.Unlock()
	for _, m := range ms {
		_ = c.ApplyRetained(m)
	}
	return nil
}

func (c *fakeCore) SyncStore() error { return nil }

func (c *fakeCore) DeliverRemote(m *message.Message, _ bool, groups []string) broker.PublishResult {
	c.mu.Lock()
	c.delivered = append(c.delivered, fmt.Sprintf("%s=%s%v", m.Topic, m.Payload, groups))
	hold := c.hold
	c.mu.Unlock()
	c.poke()
	return broker.PublishResult{Matched: 1, Durable: hold}
}

func (c *fakeCore) InterestFilters() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.filters)
}

func (c *fakeCore) WatchInterest(fn func()) {
	c.mu.Lock()
	c.watch = append(c.watch, fn)
	c.mu.Unlock()
}

func (c *fakeCore) setInterest(fs ...string) {
	c.mu.Lock()
	c.filters = fs
	w := slices.Clone(c.watch)
	c.mu.Unlock()
	for _, fn := range w {
		fn()
	}
}

func (c *fakeCore) deliveries() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.delivered)
}

// tnode is one node of a test cluster: raft over an in-memory transport (so tests can cut it
// off), node links over loopback TCP.
type tnode struct {
	*Node
	id    string
	core  *fakeCore
	b     *broker.Broker // nodes with a real core (addBroker)
	trans *raft.InmemTransport
	dir   string
	ln    net.Listener
}

// tcluster holds the nodes and the map from raft addresses to link addresses.
type tcluster struct {
	t     *testing.T
	mu    sync.Mutex
	links map[raft.ServerAddress]string
	nodes []*tnode
	tune  func(*raft.Config)
	// brokers: nodes get a real core (broker.Broker) instead of a fakeCore.
	brokers bool
	// writeTimeout is the nodes' (default 5 s).
	writeTimeout time.Duration
	// maxFrame is the nodes' Config.MaxFrame (0: the package default).
	maxFrame int
	// opened, if set, is called with each node after Open and before Start (to register hooks).
	opened func(*tnode)
}

func newTCluster(t *testing.T) *tcluster {
	return &tcluster{t: t, links: map[raft.ServerAddress]string{}}
}

func (tc *tcluster) linkAddr(a raft.ServerAddress) string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.links[a]
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("TERN_CLUSTER_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// add opens a node (dir reused when not empty) and starts it, joining join (a node of tc) when
// not nil.
func (tc *tcluster) add(id string, join *tnode, dir string) *tnode {
	t := tc.t
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	tn := &tnode{id: id, core: newFakeCore(), trans: trans, dir: dir, ln: ln}
	tc.mu.Lock()
	tc.links[addr] = ln.Addr().String()
	for _, o := range tc.nodes {
		if o.trans != nil {
			o.trans.Connect(addr, trans)
			trans.Connect(o.trans.LocalAddr(), o.trans)
		}
	}
	tc.nodes = append(tc.nodes, tn)
	tc.mu.Unlock()
	cfg := Config{NodeID: id, Listen: ln.Addr().String(), Dir: dir, Transport: trans, Listener: ln,
		LinkAddr: tc.linkAddr, WriteTimeout: cmp.Or(tc.writeTimeout, 5*time.Second), JoinTimeout: waitTimeout, Log: testLog(t), Tune: tc.tune,
		MaxFrame: tc.maxFrame}
	if join != nil {
		cfg.Join = []string{join.ln.Addr().String()}
	}
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tn.Node = n
	if tc.opened != nil {
		tc.opened(tn)
	}
	if !tc.brokers {
		if err := n.Start(tn.core, tn.core); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		return tn
	}
	// A real core on a memory store, running on the node's replica, as server.Start assembles it.
	rep, err := n.SessionStore(memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.DefaultConfig(), rep, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	tn.b = b
	b.SetCluster(n)
	if err := n.Start(b, b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.Close()
		_ = b.Close()
	})
	return tn
}

// three starts n1, and n2 and n3 joining it.
func (tc *tcluster) three() (n1, n2, n3 *tnode) {
	n1 = tc.add("n1", nil, "")
	n2 = tc.add("n2", n1, "")
	n3 = tc.add("n3", n1, "")
	return n1, n2, n3
}

// isolate cuts a node's raft off from every other node, both ways (heal: connect again).
func (tc *tcluster) isolate(n *tnode, heal bool) {
	for _, o := range tc.nodes {
		if o == n || o.trans == nil {
			continue
		}
		if heal {
			o.trans.Connect(n.trans.LocalAddr(), n.trans)
			n.trans.Connect(o.trans.LocalAddr(), o.trans)
		} else {
			o.trans.Disconnect(n.trans.LocalAddr())
			n.trans.Disconnect(o.trans.LocalAddr())
		}
	}
}

// eventually polls cond (with a short pause between tries) until it holds or waitTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return c
}

var _ store.Records = Records{}
