package cluster

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/tcpproxy"
)

// bootFive is five stateless nodes started at once with the same join list, each behind a TCP
// proxy on which the test refuses the other nodes' addresses (each node dials from its own
// loopback address) to give them partial views.
type bootFive struct {
	t     *testing.T
	tc    *tcluster
	nodes []*tnode
	ips   []string
	px    []*tcpproxy.Proxy
}

func newBootFive(t *testing.T) *bootFive {
	const k = 5
	bf := &bootFive{t: t, tc: newTCluster(t)}
	var join []string
	var lns []net.Listener
	for i := range k {
		ip := fmt.Sprintf("127.0.0.%d", 21+i)
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		px, err := tcpproxy.Listen("127.0.0.1:0", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(px.Stop)
		bf.ips, bf.px, lns = append(bf.ips, ip), append(bf.px, px), append(lns, ln)
		join = append(join, px.Addr())
	}
	// Every pair apart to begin with.
	for i := range k {
		for j := range k {
			if i != j {
				bf.px[i].Block(bf.ips[j], true)
			}
		}
	}
	for i := range k {
		id := fmt.Sprintf("n%d", i+1)
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		tn := &tnode{id: id, core: newFakeCore(), trans: trans, dir: t.TempDir(), ln: lns[i]}
		bf.tc.links[addr] = lns[i].Addr().String()
		for _, o := range bf.nodes {
			o.trans.Connect(addr, trans)
			trans.Connect(o.trans.LocalAddr(), o.trans)
		}
		n, err := Open(Config{NodeID: id, Listen: lns[i].Addr().String(), Advertise: join[i], Join: join,
			Dir: tn.dir, Transport: trans, Listener: lns[i], LinkAddr: bf.tc.linkAddr,
			WriteTimeout: 5 * time.Second, JoinTimeout: 60 * time.Second, Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		tn.Node = n
		bf.nodes = append(bf.nodes, tn)
	}
	return bf
}

// start starts every node at once; the channel gets each Start's result.
func (bf *bootFive) start() <-chan error {
	done := make(chan error, len(bf.nodes))
	for _, tn := range bf.nodes {
		go func() { done <- tn.Start(tn.core, tn.core) }()
	}
	return done
}

// allow lets nodes i and j (1-based) reach each other.
func (bf *bootFive) allow(i, j int) {
	bf.px[i-1].Block(bf.ips[j-1], false)
	bf.px[j-1].Block(bf.ips[i-1], false)
}

// heard is how many listed nodes node i has heard of (itself included).
func (bf *bootFive) heard(i int) int {
	b := &bf.nodes[i-1].boot
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.heard)
}

// voted waits until node i has heard of a majority, which is when it fixes its first vote (a
// vote that may move since: the wait is for the views, not for a vote to stay).
func (bf *bootFive) voted(i int) {
	bf.t.Helper()
	eventually(bf.t, fmt.Sprintf("n%d hears of a majority", i), func() bool { return bf.heard(i) >= 3 })
}

// Five nodes started at once with the same join list, shown partial views one stage after
// another that fix their votes at n1 n1 n3 n3 n2 when a vote never changes (as splitViews does
// in the unit test): nobody has three of five, and they used to wait out their join timeout.
// Once they all reach each other exactly one cluster of five forms.
func TestBootstrapFiveSplitViews(t *testing.T) {
	bf := newBootFive(t)
	done := bf.start()
	bf.allow(3, 4)
	bf.allow(3, 5)
	bf.voted(3)
	bf.allow(2, 5)
	bf.allow(1, 2)
	bf.voted(5)
	bf.voted(2)
	bf.allow(4, 5)
	bf.voted(4)
	for i := 1; i <= 5; i++ {
		for j := i + 1; j <= 5; j++ {
			bf.allow(i, j)
		}
	}
	timeout := time.After(45 * time.Second)
	for range bf.nodes {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("a node did not start: %v", err)
			}
		case <-timeout:
			t.Fatal("the nodes did not form a cluster within 45 s")
		}
	}
	for _, tn := range bf.nodes {
		t.Cleanup(func() { _ = tn.Close() })
	}
	leader := ""
	eventually(t, "one cluster of five with one leader", func() bool {
		leader = ""
		for _, tn := range bf.nodes {
			l := tn.Leader()
			if len(tn.members()) != 5 || l == "" || leader != "" && l != leader {
				return false
			}
			leader = l
		}
		return true
	})
}
