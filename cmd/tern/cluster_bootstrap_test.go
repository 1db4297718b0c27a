package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// bootstraps counts the nodes whose log of this run says they started a new cluster.
func bootstraps(t *testing.T, nodes []*cnode) (ids []string) {
	t.Helper()
	for _, n := range nodes {
		b, err := os.ReadFile(n.proc.logPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "starting a new cluster") {
			ids = append(ids, n.id)
		}
	}
	return ids
}

// TestClusterBootstrapSameJoinList starts three processes at once with the same --join list
// (each listing all three, itself included): exactly one cluster of three voters forms; all
// three restarted with the same command keep it without a second bootstrap.
func TestClusterBootstrapSameJoinList(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three tern processes")
	}
	c := &ctestCluster{t: t, bin: buildTern(t)}
	var addrs []string
	for i := 1; i <= 3; i++ {
		bind := freeAddrOn(t, fmt.Sprintf("127.0.0.%d", i))
		n := &cnode{id: fmt.Sprintf("n%d", i), i: i, dir: t.TempDir(), mqtt: freeAddrOn(t, "127.0.0.1"),
			http: freeAddrOn(t, "127.0.0.1"), bind: bind}
		n.px = newProxy(t, bind)
		c.nodes = append(c.nodes, n)
		addrs = append(addrs, n.px.addr())
	}
	join := strings.Join(addrs, ",")
	oneCluster := func(run string) {
		t.Helper()
		for _, n := range c.nodes {
			c.launch(n, join)
		}
		for _, n := range c.nodes {
			c.wait(n)
		}
		until(t, 30*time.Second, run+": every node sees the same leader and three voters", func() bool {
			leader := ""
			for _, n := range c.nodes {
				st, ok := c.status(n)
				if !ok || st.Leader == "" || len(st.Members) != 3 || (leader != "" && st.Leader != leader) {
					return false
				}
				leader = st.Leader
				for _, m := range st.Members {
					if !m.Voter {
						return false
					}
				}
			}
			return true
		})
	}

	oneCluster("first start")
	if got := bootstraps(t, c.nodes); len(got) != 1 {
		t.Fatalf("nodes that started a new cluster: %v, want exactly one", got)
	}
	for _, n := range c.nodes {
		n.proc.stop(t)
	}
	oneCluster("restart")
	if got := bootstraps(t, c.nodes); len(got) != 0 {
		t.Fatalf("after a restart with the same command, nodes that started a new cluster: %v", got)
	}
}
