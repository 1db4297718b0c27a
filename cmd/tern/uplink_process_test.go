package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
)

// TestUplinkProcesses runs tiered routing with the real binary: a designated router (DR) for
// bldg1 with authentication on, and three sites: a and b reach the DR through a proxy each, c
// directly but without the route grant. In order:
//
//  1. no loop: sites a and b both subscribed to # get each message (from a, from b, from the DR)
//     once; site c's message is refused upstream;
//  2. site a's link is cut while QoS 1 publishers publish there: its local subscriber still gets
//     messages, a query there is answered stale; site a is killed -9 and restarted during the
//     outage, the link returns, site a is killed -9 again while the backlog drains (paced by
//     drain_rate), then the DR is killed -9 and restarted; every message a publisher had
//     acknowledged reaches the DR's subscriber, in order per publisher;
//  3. overflow: site b's small trunk drops its oldest while its link is down (counted there), and
//     the DR counts the numbers it never got as gaps.
func TestUplinkProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildTern(t)
	pki := servertest.NewPKI(t)

	drData := t.TempDir()
	for _, args := range [][]string{
		{"user", "add", "site-a", "--grant", "route:bldg1/#"},
		{"user", "add", "site-b", "--grant", "route:bldg1/#"},
		{"user", "add", "watch", "--grant", "subscribe:#", "--grant", "publish:#", "--grant", "admin:#", "--password", "pw"},
	} {
		if out, err := exec.Command(bin, append(args, "--data-dir", drData)...).CombinedOutput(); err != nil {
			t.Fatalf("tern %v: %v\n%s", args, err, out)
		}
	}
	dr := newRouter(t, bin, "dr", drData, func(r *router) string {
		cert, key := pki.Server()
		return fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\nclient_ca_file = %q\n[route]\nid = \"dr\"\nlisten = %q\ndesignated = [\"bldg1\"]\n",
			cert, key, pki.CA(), r.route)
	})
	dr.start(t)
	proxyA := servertest.StartProxy(t, dr.route)
	proxyB := servertest.StartProxy(t, dr.route)
	site := func(name, target, extra string) *router {
		cert, key := pki.Client(name)
		r := newRouter(t, bin, name, t.TempDir(), func(*router) string {
			return fmt.Sprintf("[route]\nid = %q\n[[route.uplink]]\nname = \"cloud\"\nurl = \"mqtts://%s\"\nnamespaces = [\"bldg1\"]\n"+
				"cert_file = %q\nkey_file = %q\nca_file = %q\nkeep_alive = \"1s\"\nreconnect_max = \"500ms\"\n%s",
				name, target, cert, key, pki.CA(), extra)
		})
		r.start(t)
		return r
	}
	a := site("site-a", proxyA.Addr(), "drain_rate = 1500\n")
	b := site("site-b", proxyB.Addr(), "max_queued_messages = 20\n")
	c := site("site-c", dr.route, "")

	// The DR's subscriber: a persistent session that comes back after the DR restarts.
	got := newArrivals()
	stopWatch := make(chan struct{})
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		watchLoop(dr.mqtt, got, stopWatch)
	}()
	t.Cleanup(func() { close(stopWatch); watchWG.Wait() })

	// 1. No loop, and the route grant.
	for _, r := range []*router{a, b} {
		r.waitLink(t, func(u uplinkState) bool { return u.Connected }, "up")
	}
	got.waitFor(t, func() bool { return got.online.Load() }, "the DR's subscriber")
	subA, subB := collect(t, a.mqtt, "loop-a", "#"), collect(t, b.mqtt, "loop-b", "#")
	a.waitLink(t, func(u uplinkState) bool { return u.Subscriptions > 0 }, "# held upstream")
	b.waitLink(t, func(u uplinkState) bool { return u.Subscriptions > 0 }, "# held upstream")
	publishOnce(t, a.mqtt, "", "bldg1/loop/a")
	publishOnce(t, b.mqtt, "", "bldg1/loop/b")
	publishOnce(t, dr.mqtt, "watch", "bldg1/loop/dr")
	got.waitFor(t, func() bool { return got.has("bldg1/loop/a") && got.has("bldg1/loop/b") && got.has("bldg1/loop/dr") }, "the three at the DR")
	publishOnce(t, dr.mqtt, "watch", "bldg1/loop/marker")
	for name, s := range map[string]*collector{"a": subA, "b": subB} {
		topics := s.until(t, "bldg1/loop/marker")
		if want := "[bldg1/loop/a bldg1/loop/b bldg1/loop/dr]"; fmt.Sprint(sortedCopy(topics)) != want {
			t.Errorf("site %s got %v, want each of %s once", name, topics, want)
		}
	}
	publishOnce(t, c.mqtt, "", "bldg1/from-c")
	c.waitLink(t, func(u uplinkState) bool { return u.RefusedUpstream == 1 }, "site c's message refused")

	// 2. Outage, kills and the drain at site a.
	acked := newArrivals()
	stopPub := make(chan struct{})
	var pubWG sync.WaitGroup
	for p := range 2 {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			numberedPublisher(a.mqtt, fmt.Sprintf("p%d", p), stopPub, acked.add)
		}()
	}
	local := collect(t, a.mqtt, "local-a", "bldg1/load/#")
	acked.waitFor(t, func() bool { return acked.count() >= 200 }, "publishing at site a")
	proxyA.Cut()
	a.waitLink(t, func(u uplinkState) bool { return !u.Connected }, "down")
	before := local.count()
	acked.waitFor(t, func() bool { return acked.count() >= 1200 && local.count() >= before+300 }, "local delivery during the outage")
	if stale := a.staleQuery(t); !stale {
		t.Error("a query during the outage was not answered stale")
	}
	a.kill(t)
	a.start(t)
	n := acked.count()
	acked.waitFor(t, func() bool { return acked.count() >= n+1000 }, "publishing after the restart")
	proxyA.Restore()
	a.waitLink(t, func(u uplinkState) bool { return u.Connected && u.Queued > 200 }, "draining")
	a.kill(t)
	a.start(t)
	a.waitLink(t, func(u uplinkState) bool { return u.Connected }, "up again")
	dr.kill(t)
	dr.start(t)
	a.waitLink(t, func(u uplinkState) bool { return u.Connected }, "up with the restarted DR")
	n = acked.count()
	acked.waitFor(t, func() bool { return acked.count() >= n+200 }, "publishing after the DR restarted")
	close(stopPub)
	pubWG.Wait()
	want := acked.keys()
	got.waitFor(t, func() bool { return got.hasAll(want) }, fmt.Sprintf("all %d acknowledged messages at the DR", len(want)))
	outOfOrder := got.outOfOrder()
	rs := dr.stats(t)
	as := a.uplink(t)
	t.Logf("site a: %d acknowledged, all delivered; %d deliveries to the DR's subscriber were repeats; DR dropped %d duplicates; "+
		"site a sent %d (%d again after reconnects), %d reconnects", len(want), got.repeats(), rs.RoutedDuplicates, as.Sent, as.Resent, as.Reconnects)
	if outOfOrder > 0 {
		t.Errorf("%d messages arrived out of order per publisher", outOfOrder)
	}
	if got.has("bldg1/from-c") {
		t.Error("site c's message, without the route grant, reached the DR")
	}

	// 3. Overflow at site b.
	proxyB.Cut()
	b.waitLink(t, func(u uplinkState) bool { return !u.Connected }, "down")
	gapsBefore := dr.stats(t).RoutedGaps
	for i := range 50 {
		publishOnce(t, b.mqtt, "", fmt.Sprintf("bldg1/over/%d", i))
	}
	if u := b.uplink(t); u.DroppedFull != 30 || u.Queued != 20 {
		t.Errorf("site b's trunk: %d dropped, %d queued; want 30 and 20", u.DroppedFull, u.Queued)
	}
	proxyB.Restore()
	got.waitFor(t, func() bool { return got.has("bldg1/over/49") }, "the overflow's last message")
	for i := range 30 {
		if got.has(fmt.Sprintf("bldg1/over/%d", i)) {
			t.Fatalf("bldg1/over/%d was dropped at the site yet arrived", i)
		}
	}
	if g := dr.stats(t).RoutedGaps - gapsBefore; g != 30 {
		t.Errorf("the DR counted %d gaps, want 30", g)
	}
	for _, r := range []*router{a, b, c, dr} {
		r.stop(t)
	}
}

// ---- routers ----

type router struct {
	bin, name, data, cfgFile string
	mqtt, http, route        string
	p                        *ternProcess
}

func newRouter(t *testing.T, bin, name, data string, body func(*router) string) *router {
	r := &router{bin: bin, name: name, data: data, mqtt: freeAddr(t), http: freeAddr(t), route: freeAddr(t)}
	r.cfgFile = filepath.Join(t.TempDir(), name+".toml")
	if err := os.WriteFile(r.cfgFile, []byte(body(r)), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// start runs the router and returns once both its MQTT and its HTTP listeners accept: the test
// reads the router's state over HTTP, and tern opens its HTTP listener after the MQTT one.
func (r *router) start(t *testing.T) {
	t.Helper()
	r.p = startTernProcess(t, r.bin, r.data, r.mqtt, "--config", r.cfgFile, "--http", r.http)
	r.p.waitListening(t, r.http)
}

func (r *router) kill(t *testing.T) {
	t.Helper()
	r.p.kill(t)
}

func (r *router) stop(t *testing.T) {
	t.Helper()
	r.p.stop(t)
}

// stats reads GET /v1/stats (as the DR's admin where authentication is on).
func (r *router) stats(t *testing.T) *server.RouteStats {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+r.http+"/v1/stats?sessions=0", nil)
	req.SetBasicAuth("watch", "pw")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s stats: %v (log in %s)", r.name, err, r.p.logPath)
	}
	defer resp.Body.Close()
	var st server.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Route == nil {
		t.Fatalf("%s stats: %s %v", r.name, resp.Status, err)
	}
	return st.Route
}

type uplinkState struct {
	Connected                    bool
	Queued, Subscriptions        int
	Sent, Resent, Reconnects     uint64
	RefusedUpstream, DroppedFull uint64
}

func (r *router) uplink(t *testing.T) uplinkState {
	t.Helper()
	u := r.stats(t).Uplinks[0]
	return uplinkState{Connected: u.Connected, Queued: u.Queued, Subscriptions: u.Subscriptions, Sent: u.Sent, Resent: u.Resent,
		Reconnects: u.Reconnects, RefusedUpstream: u.RefusedUpstream, DroppedFull: u.DroppedFull}
}

// waitLink waits (at most 20 s) until the site's uplink is as cond wants.
func (r *router) waitLink(t *testing.T, cond func(uplinkState) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond(r.uplink(t)) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s within 20 s: %+v (log in %s)", r.name, what, r.uplink(t), r.p.logPath)
		}
		waitFor(20 * time.Millisecond)
	}
}

// staleQuery asks the site for bldg1's retained messages and reports whether the answer is stale.
func (r *router) staleQuery(t *testing.T) bool {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + r.http + "/v1/retained/bldg1/%23")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Tern-Stale") == "true"
}

// ---- clients ----

// arrivals records messages by topic, in arrival order.
type arrivals struct {
	mu     sync.Mutex
	seen   map[string]int
	order  []string
	online atomic.Bool
	news   chan struct{}
}

func newArrivals() *arrivals { return &arrivals{seen: map[string]int{}, news: make(chan struct{}, 1)} }

func (a *arrivals) add(topic string) {
	a.mu.Lock()
	if a.seen[topic] == 0 {
		a.order = append(a.order, topic)
	}
	a.seen[topic]++
	a.mu.Unlock()
	select {
	case a.news <- struct{}{}:
	default:
	}
}

func (a *arrivals) has(topic string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[topic] > 0
}

func (a *arrivals) hasAll(topics []string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, tp := range topics {
		if a.seen[tp] == 0 {
			return false
		}
	}
	return true
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.order)
}

func (a *arrivals) keys() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.order...)
}

func (a *arrivals) repeats() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.seen {
		n += c - 1
	}
	return n
}

// outOfOrder counts first arrivals of bldg1/load/<publisher>/<n> whose n is below one that came
// before from the same publisher.
func (a *arrivals) outOfOrder() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	last := map[string]int{}
	bad := 0
	for _, tp := range a.order {
		var pub string
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(tp, "bldg1/load/"), "%2s/%d", &pub, &n); err != nil {
			continue
		}
		if prev, ok := last[pub]; ok && n < prev {
			bad++
			continue
		}
		last[pub] = n
	}
	return bad
}

// waitFor waits (at most 60 s) for cond, woken by arrivals.
func (a *arrivals) waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-a.news:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// watchLoop keeps the DR's persistent subscriber connected until stop.
func watchLoop(addr string, got *arrivals, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := dialAs(addr, "watch", "watch", false, func(p *paho.Publish) { got.add(p.Topic) })
		if err != nil {
			waitFor(50 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "bldg1/#", QoS: 1}}})
		cancel()
		if err == nil {
			got.online.Store(true)
			select {
			case <-stop:
				_ = c.Disconnect(&paho.Disconnect{})
				return
			case <-c.Done():
			}
		}
		got.online.Store(false)
		_ = c.Disconnect(&paho.Disconnect{})
	}
}

// dialAs connects an MQTT 5 client, with a session of an hour unless clean, as user (password
// "pw"; "" connects anonymously).
func dialAs(addr, id, user string, clean bool, onMsg func(*paho.Publish)) (*paho.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	cfg := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 5 * time.Second}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onMsg(pr.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cfg)
	expiry := uint32(3600)
	cp := &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	if user != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = user, true, []byte("pw"), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if ack.ReasonCode != 0 {
		_ = conn.Close()
		return nil, fmt.Errorf("connack %d", ack.ReasonCode)
	}
	return c, nil
}

// publishOnce publishes one QoS 1 message (payload = topic) and waits for its acknowledgement.
func publishOnce(t *testing.T, addr, user, topic string) {
	t.Helper()
	c, err := dialAs(addr, fmt.Sprintf("once-%d", time.Now().UnixNano()), user, true, nil)
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if res, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)}); err != nil || res.ReasonCode >= 0x80 {
		t.Fatalf("publish %s: %v %+v", topic, err, res)
	}
}

// collector is a clean subscriber that records topics.
type collector struct {
	got *arrivals
	ch  chan string
}

func collect(t *testing.T, addr, id, filter string) *collector {
	t.Helper()
	k := &collector{got: newArrivals(), ch: make(chan string, 100000)}
	c, err := dialAs(addr, id, "", true, func(p *paho.Publish) {
		k.got.add(p.Topic)
		select {
		case k.ch <- p.Topic:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *collector) count() int { return k.got.count() }

// until returns every topic received before marker (deliveries, repeats included).
func (k *collector) until(t *testing.T, marker string) []string {
	t.Helper()
	var out []string
	deadline := time.After(20 * time.Second)
	for {
		select {
		case tp := <-k.ch:
			if tp == marker {
				return out
			}
			out = append(out, tp)
		case <-deadline:
			t.Fatalf("no %s within 20 s; got %v", marker, out)
		}
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// numberedPublisher publishes bldg1/load/<id>/<n> at QoS 1, about 300 a second, reconnecting
// whenever the site goes away, and reports each acknowledged topic.
func numberedPublisher(addr, id string, stop <-chan struct{}, ok func(string)) {
	n := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := dialAs(addr, id, "", true, nil)
		if err != nil {
			waitFor(20 * time.Millisecond)
			continue
		}
		for {
			select {
			case <-stop:
				_ = c.Disconnect(&paho.Disconnect{})
				return
			default:
			}
			n++
			topic := fmt.Sprintf("bldg1/load/%s/%d", id, n)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)})
			cancel()
			if err != nil {
				break
			}
			if res.ReasonCode < 0x80 {
				ok(topic)
			}
			waitFor(3 * time.Millisecond) // pacing, not synchronisation
		}
		_ = c.Disconnect(&paho.Disconnect{})
	}
}
