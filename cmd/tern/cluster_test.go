package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/cluster"
)

// The cluster's process tests: three real tern processes on loopback, each with its own data
// directory, its cluster listener on 127.0.0.N and a proxy in front of it (cluster_proxy_test.go).
// Every wait has a deadline; waits for something the cluster does in the background (interest
// reaching another node, an election, a catch-up) poll for it.

// newLeaderBound is the most a kill -9 of the leader may leave the cluster without a leader:
// followers hear nothing for 1-2 s, then a pre-vote and a vote with an election timeout of 2.5 s.
const newLeaderBound = 15 * time.Second

type cnode struct {
	id, dir          string
	i                int // the node's loopback address is 127.0.0.i
	mqtt, http, bind string
	px               *proxy
	proc             *ternProcess
}

type ctestCluster struct {
	t     *testing.T
	bin   string
	nodes []*cnode
	user  string // credentials once auth is on
	pass  string
}

// start starts node n (joining join, or none) and waits until it listens.
func (c *ctestCluster) start(n *cnode, join string) {
	c.launch(n, join)
	c.wait(n)
}

// launch starts node n with --join join ("" for none) without waiting for it (the nodes of a
// cluster started at once wait for each other); wait waits until its MQTT listener opens.
func (c *ctestCluster) launch(n *cnode, join string) {
	t := c.t
	t.Helper()
	logPath := filepath.Join(t.TempDir(), n.id+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"serve", "--node-id", n.id, "--cluster-listen", n.bind, "--cluster-advertise", n.px.addr(),
		"--mqtt", n.mqtt, "--http", n.http, "--unix", "", "--data-dir", n.dir, "--log-level", "info"}
	if join != "" {
		args = append(args, "--join", join)
	}
	cmd := exec.Command(c.bin, args...)
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

// wait waits until node n's MQTT listener opens: once the node has joined and caught up.
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

func newCTestCluster(t *testing.T) *ctestCluster {
	c := &ctestCluster{t: t, bin: buildTern(t)}
	for i := 1; i <= 3; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		bind := freeAddrOn(t, ip)
		n := &cnode{id: fmt.Sprintf("n%d", i), i: i, dir: t.TempDir(), mqtt: freeAddrOn(t, "127.0.0.1"),
			http: freeAddrOn(t, "127.0.0.1"), bind: bind}
		n.px = newProxy(t, bind)
		c.nodes = append(c.nodes, n)
	}
	c.start(c.nodes[0], "")
	for _, n := range c.nodes[1:] {
		c.start(n, c.nodes[0].px.addr())
	}
	return c
}

// handedOut holds every port freeAddrOn has returned in this test process. A cluster chooses
// all its nodes' ports before the first node binds any, so "free now" alone let two nodes of
// one cluster be given the same port, and the second failed with "address already in use".
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// freeAddrOn returns a free port on ip below the kernel's ephemeral range, never one it returned
// before: the nodes bind their ports a while after they are chosen (a node joins first), and a
// port in the ephemeral range may be taken meanwhile by any outgoing connection on the machine.
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		_, _ = fmt.Sscan(string(b), &low)
	}
	low = max(low, 21000)
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = make(map[int]bool)
	}
	for range 200 {
		port := 20000 + rand.IntN(low-20000)
		if handedOut.ports[port] {
			continue
		}
		addr := fmt.Sprintf("%s:%d", ip, port)
		if ln, err := net.Listen("tcp", addr); err == nil {
			_ = ln.Close()
			handedOut.ports[port] = true
			return addr
		}
	}
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s (the cluster tests need 127.0.0.0/8): %v", ip, err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// partition cuts a node off from the others (on: false heals it).
func (c *ctestCluster) partition(n *cnode, on bool) {
	n.px.block("*", on)
	for _, o := range c.nodes {
		if o != n {
			o.px.block(fmt.Sprintf("127.0.0.%d", n.i), on)
		}
	}
}

// api calls a node's HTTP API with the cluster's credentials and returns status and body.
func (c *ctestCluster) api(n *cnode, method, path string, body any) (int, string) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+n.http+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	cl := http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *ctestCluster) status(n *cnode) (cluster.Status, bool) {
	code, body := c.api(n, "GET", "/v1/cluster", nil)
	var st cluster.Status
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
		return st, false
	}
	return st, true
}

// until polls cond every 50 ms until it holds or d passes.
func until(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("not within %s: %s", d, what)
		}
		<-time.After(50 * time.Millisecond)
	}
	return time.Since(start)
}

// mqttClient is a paho.golang client that records what it receives.
type mqttClient struct {
	*paho.Client
	mu  sync.Mutex
	got []string
	new chan struct{}
}

func (c *ctestCluster) dial(t *testing.T, n *cnode, id string) *mqttClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.mqtt, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := &mqttClient{new: make(chan struct{}, 1)}
	cfg := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 10 * time.Second}
	cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
		m.mu.Lock()
		m.got = append(m.got, pr.Packet.Topic+"="+string(pr.Packet.Payload))
		m.mu.Unlock()
		select {
		case m.new <- struct{}{}:
		default:
		}
		return true, nil
	}}
	m.Client = paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if c.user != "" {
		cp.Username, cp.UsernameFlag = c.user, true
		cp.Password, cp.PasswordFlag = []byte(c.pass), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := m.Connect(ctx, cp)
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect %s to %s: %v %+v", id, n.id, err, ack)
	}
	t.Cleanup(func() { _ = m.Disconnect(&paho.Disconnect{}) })
	return m
}

func (m *mqttClient) received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string{}, m.got...)
}

func (m *mqttClient) has(s string) bool {
	for _, g := range m.received() {
		if g == s {
			return true
		}
	}
	return false
}

// waitFor waits until the client has received s.
func (m *mqttClient) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for !m.has(s) {
		select {
		case <-m.new:
		case <-deadline:
			t.Fatalf("%q not received; got %v", s, m.received())
		}
	}
}

func (m *mqttClient) sub(t *testing.T, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}}); err != nil {
		t.Fatal(err)
	}
}

func (m *mqttClient) pub(t *testing.T, topic, payload string, qos byte, retain bool) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := m.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	if res == nil {
		return 0
	}
	return byte(res.ReasonCode)
}

// interestReached publishes probes on topic from pub until sub receives one: the receiving
// node's interest has reached the publishing node.
func interestReached(t *testing.T, pub, sub *mqttClient, topic string) {
	t.Helper()
	for i := 0; ; i++ {
		probe := fmt.Sprintf("probe-%d", i)
		pub.pub(t, topic, probe, 0, false)
		select {
		case <-sub.new:
		case <-time.After(200 * time.Millisecond):
		}
		if sub.has(topic + "=" + probe) {
			return
		}
		if i > 75 {
			t.Fatalf("interest in %s never reached the publisher's node", topic)
		}
	}
}

func TestClusterOfThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three tern processes")
	}
	c := newCTestCluster(t)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	until(t, 20*time.Second, "every node sees three members with links up", func() bool {
		for _, n := range c.nodes {
			st, ok := c.status(n)
			if !ok || len(st.Members) != 3 || st.Leader == "" {
				return false
			}
			for _, m := range st.Members {
				if m.Link != "up" && m.Link != "self" {
					return false
				}
			}
		}
		return true
	})

	t.Run("publish on one node, subscribe on the others, every QoS", func(t *testing.T) {
		pub := c.dial(t, n1, "pub")
		s2, s3 := c.dial(t, n2, "sub2"), c.dial(t, n3, "sub3")
		for _, s := range []*mqttClient{s2, s3} {
			s.sub(t, "q/#", 2)
		}
		interestReached(t, pub, s2, "q/probe")
		interestReached(t, pub, s3, "q/probe")
		for qos := byte(0); qos <= 2; qos++ {
			for i := range 20 {
				if rc := pub.pub(t, fmt.Sprintf("q/%d", qos), fmt.Sprint(i), qos, false); rc >= 0x80 {
					t.Fatalf("QoS %d publish refused: %#x", qos, rc)
				}
			}
		}
		for _, s := range []*mqttClient{s2, s3} {
			for qos := 0; qos <= 2; qos++ {
				s.waitFor(t, fmt.Sprintf("q/%d=19", qos))
			}
			// In order, each once, from one publisher to one subscriber.
			var seq []string
			for _, g := range s.received() {
				if strings.HasPrefix(g, "q/1=") {
					seq = append(seq, g)
				}
			}
			if len(seq) != 20 || seq[0] != "q/1=0" || seq[19] != "q/1=19" {
				t.Fatalf("QoS 1 messages out of order or repeated: %v", seq)
			}
		}
	})

	t.Run("shared subscription across nodes", func(t *testing.T) {
		pub := c.dial(t, n1, "spub")
		m2, m3 := c.dial(t, n2, "member2"), c.dial(t, n3, "member3")
		m2.sub(t, "$share/grp/sh/#", 1)
		m3.sub(t, "$share/grp/sh/#", 1)
		// The group's interest: a plain subscriber on each node shows when both have it.
		w2, w3 := c.dial(t, n2, "w2"), c.dial(t, n3, "w3")
		w2.sub(t, "sh/#", 0)
		w3.sub(t, "sh/#", 0)
		interestReached(t, pub, w2, "sh/probe")
		interestReached(t, pub, w3, "sh/probe")
		for i := range 20 {
			pub.pub(t, "sh/x", fmt.Sprint(i), 1, false)
		}
		seen := map[string]int{}
		until(t, 15*time.Second, "20 shared messages delivered", func() bool {
			clear(seen)
			for _, g := range append(m2.received(), m3.received()...) {
				if strings.HasPrefix(g, "sh/x=") {
					seen[g]++
				}
			}
			return len(seen) >= 20
		})
		for g, k := range seen {
			if k != 1 {
				t.Fatalf("%s delivered %d times to the group", g, k)
			}
		}
		if len(seen) != 20 || len(m2.received()) == 0 || len(m3.received()) == 0 {
			t.Fatalf("group got %d distinct; n2 %d, n3 %d", len(seen), len(m2.received()), len(m3.received()))
		}
	})

	t.Run("retained set on one node is read on another", func(t *testing.T) {
		pub := c.dial(t, n1, "rpub")
		if rc := pub.pub(t, "ret/a", "kept", 1, true); rc >= 0x80 {
			t.Fatalf("retained publish refused: %#x", rc)
		}
		until(t, 10*time.Second, "retained on n3", func() bool {
			s := c.dial(t, n3, fmt.Sprintf("rsub-%d", time.Now().UnixNano()))
			s.sub(t, "ret/#", 1)
			select {
			case <-s.new:
			case <-time.After(time.Second):
			}
			return s.has("ret/a=kept")
		})
	})

	t.Run("a call reaches a service on another node", func(t *testing.T) {
		svc := c.dial(t, n2, "service")
		svc.sub(t, "$rpc/svc/echo", 1)
		svc.Client.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
			if pr.Packet.Properties == nil || pr.Packet.Properties.ResponseTopic == "" {
				return false, nil
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, _ = svc.Publish(ctx, &paho.Publish{Topic: pr.Packet.Properties.ResponseTopic, QoS: 1,
					Payload:    append([]byte("echo:"), pr.Packet.Payload...),
					Properties: &paho.PublishProperties{CorrelationData: pr.Packet.Properties.CorrelationData}})
			}()
			return true, nil
		})
		caller := c.dial(t, n1, "caller")
		caller.sub(t, "$response/caller/#", 1)
		until(t, 15*time.Second, "the call answered across nodes", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := caller.Publish(ctx, &paho.Publish{Topic: "$rpc/svc/echo", QoS: 1, Payload: []byte("hi"),
				Properties: &paho.PublishProperties{ResponseTopic: "$response/caller/1", CorrelationData: []byte("c")}})
			if err != nil || res.ReasonCode >= 0x80 {
				return false
			}
			select {
			case <-caller.new:
			case <-time.After(time.Second):
			}
			return caller.has("$response/caller/1=echo:hi")
		})
		// Nobody serves this one anywhere: refused at once.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := caller.Publish(ctx, &paho.Publish{Topic: "$rpc/none/x", QoS: 1, Payload: []byte("hi"),
			Properties: &paho.PublishProperties{ResponseTopic: "$response/caller/2", CorrelationData: []byte("d")}})
		if err != nil || res.ReasonCode != 0x10 {
			t.Fatalf("a call nobody serves: %v %+v", err, res)
		}
	})

	t.Run("a user added on one node logs in on another", func(t *testing.T) {
		code, body := c.api(n1, "PUT", "/v1/admin/users/root", map[string]any{"password": "rootpw",
			"grants": []string{"admin:#", "publish:#", "subscribe:#"}})
		if code != http.StatusOK {
			t.Fatalf("adding a user on n1: %d %s", code, body)
		}
		// Once n3 applied it, open mode ends there too: a wrong password is refused...
		c.user, c.pass = "root", "wrong"
		until(t, 10*time.Second, "n3 refuses a wrong password for root", func() bool {
			code, _ := c.api(n3, "GET", "/v1/cluster", nil)
			return code == http.StatusUnauthorized
		})
		// ... and the right one works.
		c.user, c.pass = "root", "rootpw"
		if code, body := c.api(n3, "GET", "/v1/cluster", nil); code != http.StatusOK {
			t.Fatalf("root on n3: %d %s", code, body)
		}
		c.dial(t, n2, "root-on-n2")
	})

	t.Run("a minority refuses admin writes it cannot commit", func(t *testing.T) {
		c.partition(n3, true)
		start := time.Now()
		code, body := c.api(n3, "PUT", "/v1/admin/users/lost", map[string]any{"password": "x"})
		if code == http.StatusOK {
			t.Fatalf("the minority acknowledged a write: %s", body)
		}
		t.Logf("minority write refused with %d after %s: %s", code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(body))
		if code, body := c.api(n1, "PUT", "/v1/admin/users/kept", map[string]any{"password": "y"}); code != http.StatusOK {
			t.Fatalf("majority write: %d %s", code, body)
		}
		c.partition(n3, false)
		until(t, 20*time.Second, "n3 catches up after the partition", func() bool {
			code, _ := c.api(n3, "GET", "/v1/admin/users/kept", nil)
			return code == http.StatusOK
		})
		for _, n := range c.nodes {
			if code, _ := c.api(n, "GET", "/v1/admin/users/lost", nil); code != http.StatusNotFound {
				t.Fatalf("%s has the refused write: %d", n.id, code)
			}
		}
	})

	t.Run("kill -9 of the leader", func(t *testing.T) {
		var leader *cnode
		until(t, 20*time.Second, "a leader", func() bool {
			st, ok := c.status(n1)
			for _, n := range c.nodes {
				if ok && st.Leader == n.id {
					leader = n
				}
			}
			return leader != nil
		})
		if err := leader.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-leader.proc.done
		killed := time.Now()
		var survivors []*cnode
		for _, n := range c.nodes {
			if n != leader {
				survivors = append(survivors, n)
			}
		}
		took := until(t, newLeaderBound, "a new leader among the survivors", func() bool {
			st, ok := c.status(survivors[0])
			return ok && st.Leader != "" && st.Leader != leader.id
		})
		code, body := c.api(survivors[1], "PUT", "/v1/admin/users/after-kill", map[string]any{"password": "z"})
		if code != http.StatusOK {
			t.Fatalf("admin write after the kill: %d %s", code, body)
		}
		t.Logf("new leader %s after the kill; first acknowledged admin write %s after it",
			took.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
		// The killed node comes back on its data directory, rejoins and catches up.
		c.start(leader, "")
		until(t, 30*time.Second, "the killed node has what was written without it", func() bool {
			code, _ := c.api(leader, "GET", "/v1/admin/users/after-kill", nil)
			return code == http.StatusOK
		})
		st, _ := c.status(leader)
		t.Logf("rejoined: %s is %s, applied %d", leader.id, st.State, st.AppliedIndex)
	})
}
