package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// launch starts node n with --join join without waiting for it (the nodes of a cluster started
// at once wait for each other); wait waits until its MQTT listener opens.
func (c *ctestCluster) launch(n *cnode, join string) {
	t := c.t
	t.Helper()
	logPath := filepath.Join(t.TempDir(), n.id+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "serve", "--node-id", n.id, "--cluster-listen", n.bind,
		"--cluster-advertise", n.px.addr(), "--join", join, "--mqtt", n.mqtt, "--http", n.http,
		"--unix", "", "--data-dir", n.dir, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &ternProcess{cmd: cmd, logPath: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	n.proc = p
}

func (c *ctestCluster) wait(n *cnode) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", n.mqtt, time.Second); err == nil {
			_ = conn.Close()
			return
		}
		select {
		case err := <-n.proc.done:
			log, _ := os.ReadFile(n.proc.logPath)
			t.Fatalf("%s exited at start: %v\n%s", n.id, err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(n.proc.logPath)
			t.Fatalf("%s did not listen within 60 s\n%s", n.id, log)
		}
	}
}

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
