package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
	"github.com/ternmq/tern/internal/uplink"
)

// Tiered routing in one process: a designated router for bldg1 and sites whose uplinks reach it
// through a proxy each, which a test can close or blackhole.

// linkWait bounds waits that may span a keep alive and a reconnect.
const linkWait = 10 * time.Second

func startDR(t *testing.T, pki *servertest.PKI, dataDir string, mods ...func(*config.Config)) *server.Server {
	t.Helper()
	cert, key := pki.Server()
	return servertest.Start(t, append([]func(*config.Config){func(c *config.Config) {
		c.DataDir = dataDir
		c.TLS = config.TLS{CertFile: cert, KeyFile: key, ClientCAFile: pki.CA()}
		c.Route = config.Route{ID: "dr", Listen: "127.0.0.1:0", Designated: []string{"bldg1"}}
	}}, mods...)...)
}

func siteUplink(pki *servertest.PKI, name, addr string) config.Uplink {
	cert, key := pki.Client(name)
	u := config.DefaultUplink()
	u.Name, u.URL, u.Namespaces = "cloud", "mqtts://"+addr, []string{"bldg1"}
	u.CertFile, u.KeyFile, u.CAFile = cert, key, pki.CA()
	u.KeepAlive, u.ReconnectMax = time.Second, 500*time.Millisecond
	return u
}

func startSite(t *testing.T, pki *servertest.PKI, name, addr, dataDir string, mods ...func(*config.Uplink)) *server.Server {
	t.Helper()
	u := siteUplink(pki, name, addr)
	for _, m := range mods {
		m(&u)
	}
	return servertest.Start(t, func(c *config.Config) {
		c.DataDir = dataDir
		c.Route = config.Route{ID: name, Uplinks: []config.Uplink{u}}
	})
}

func link(srv *server.Server) uplink.LinkStats { return srv.Uplinks.Stats()[0] }

func waitLink(t *testing.T, srv *server.Server, up bool) {
	t.Helper()
	eventually(t, linkWait, fmt.Sprintf("uplink connected=%v", up), func() bool { return link(srv).Connected == up })
}

// waitUpstream waits until the designated router holds n filters for the site (its subscriptions
// there are in place).
func waitUpstream(t *testing.T, srv *server.Server, n int) {
	t.Helper()
	eventually(t, linkWait, fmt.Sprintf("%d upstream subscriptions", n), func() bool { return link(srv).Subscriptions == n })
}

func sender(p *paho.Publish) string {
	if p.Properties == nil {
		return ""
	}
	return p.Properties.User.Get("tern-sender")
}

// Up and down: a message published at one site reaches the designated router's subscribers (as
// sent by <site>/<publisher>) and the other site's; two sites both subscribed to # get every
// message once, and nothing loops back.
func TestUplinkBothWays(t *testing.T) {
	pki := servertest.NewPKI(t)
	dr := startDR(t, pki, "")
	a := startSite(t, pki, "site-a", dr.Addr("route"), "")
	b := startSite(t, pki, "site-b", dr.Addr("route"), "")
	watch := v5(t, dr, "watch")
	watch.sub("bldg1/#", 1)
	subA, subB := v5(t, a, "sub-a"), v5(t, b, "sub-b")
	subA.sub("#", 1)
	subB.sub("#", 1)
	waitLink(t, a, true)
	waitLink(t, b, true)
	waitUpstream(t, a, 1)
	waitUpstream(t, b, 1)

	v5(t, a, "pub-a").pub("bldg1/t", 1, "from a")
	subA.expect("bldg1/t", "from a") // local delivery
	if m := watch.expect("bldg1/t", "from a"); sender(m) != "site-a" {
		t.Errorf("the designated router shows sender %q, want site-a", sender(m))
	}
	if m := subB.expect("bldg1/t", "from a"); sender(m) != "$uplink/cloud/site-a" {
		t.Errorf("site b shows sender %q", sender(m))
	}
	v5(t, b, "pub-b").pub("bldg1/t", 1, "from b")
	subB.expect("bldg1/t", "from b")
	subA.expect("bldg1/t", "from b")
	watch.expect("bldg1/t", "from b")
	v5(t, dr, "pub-dr").pub("bldg1/t", 2, "from dr")
	if m := subA.expect("bldg1/t", "from dr"); m.QoS != 1 {
		t.Errorf("QoS %d at the site, want the subscription's 1", m.QoS)
	}
	subB.expect("bldg1/t", "from dr")
	watch.expect("bldg1/t", "from dr")
	// Nothing came twice and nothing looped: a marker from the designated router is next.
	v5(t, dr, "marker").pub("bldg1/marker", 1, "m")
	for _, c := range []*v5Client{subA, subB} {
		if got := c.until("bldg1/marker"); len(got) != 0 {
			t.Errorf("after the messages: %s", describe(got))
		}
	}
	eventually(t, waitTimeout, "site a's counts", func() bool { st := link(a); return st.Sent == 1 && st.Acked == 1 && st.Received == 3 })
	if v := metric(t, a, `tern_uplink_connected{uplink="cloud"}`); v != 1 {
		t.Errorf("tern_uplink_connected %v", v)
	}
	if v := metric(t, a, `tern_uplink_acked_total{uplink="cloud"}`); v != 1 {
		t.Errorf("tern_uplink_acked_total %v", v)
	}
	resp, err := http.Get("http://" + a.Addr("http") + "/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st server.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Route == nil || st.Route.RouterID != "site-a" ||
		len(st.Route.Uplinks) != 1 || !st.Route.Uplinks[0].Connected {
		t.Errorf("/v1/stats route: %+v %v", st.Route, err)
	}
}

// While the link is down, local subscribers still get everything at once and the trunk queues;
// the designated router queues what the site subscribed to. A blackholed link is found by keep
// alive. When it returns, the backlog reaches the designated router in order, and what waited
// there comes down.
func TestUplinkOutageQueuesAndDrainsInOrder(t *testing.T) {
	pki := servertest.NewPKI(t)
	dr := startDR(t, pki, "")
	proxy := servertest.StartProxy(t, dr.Addr("route"))
	site := startSite(t, pki, "site-a", proxy.Addr(), t.TempDir())
	watch := v5(t, dr, "watch")
	watch.sub("bldg1/seq", 1)
	watch.sub("bldg1/marker", 1)
	local := v5(t, site, "local")
	local.sub("bldg1/#", 1)
	events := v5(t, site, "events")
	events.sub("$SYS/events/uplink/#", 0)
	waitLink(t, site, true)
	waitUpstream(t, site, 1)

	proxy.Blackhole()
	waitLink(t, site, false)
	for m := events.next(); m.Topic != "$SYS/events/uplink/down"; m = events.next() {
		// The link may have come up after the watcher subscribed.
		if m.Topic != "$SYS/events/uplink/up" {
			t.Fatalf("event %q %s", m.Topic, m.Payload)
		}
	}
	pub := v5(t, site, "pub")
	const n = 50
	for i := range n {
		pub.pub("bldg1/seq", 1, fmt.Sprint(i))
		local.expect("bldg1/seq", fmt.Sprint(i))
	}
	if st := link(site); st.Queued != n || st.OldestAgeSeconds <= 0 || st.LastError == "" {
		t.Errorf("while down: queued %d, oldest %.3fs, last error %q", st.Queued, st.OldestAgeSeconds, st.LastError)
	}
	v5(t, dr, "dr-pub").pub("bldg1/dr", 1, "waited at the designated router")

	proxy.Restore()
	waitLink(t, site, true)
	if m := events.next(); m.Topic != "$SYS/events/uplink/up" {
		t.Fatalf("event %q %s", m.Topic, m.Payload)
	}
	pub.pub("bldg1/marker", 1, "after the backlog")
	got := watch.until("bldg1/marker")
	if len(got) != n {
		t.Fatalf("the designated router got %d messages, want %d: %s", len(got), n, describe(got))
	}
	for i, m := range got {
		if string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q: out of order", i, m.Payload)
		}
	}
	for m := local.next(); m.Topic != "bldg1/dr"; m = local.next() {
		if m.Topic != "bldg1/marker" {
			t.Fatalf("at the site: %q %q", m.Topic, m.Payload)
		}
	}
	eventually(t, linkWait, "the backlog acknowledged", func() bool { st := link(site); return st.Queued == 0 && st.Inflight == 0 })
	if st := link(site); st.Reconnects != 1 || st.Acked != n+1 {
		t.Errorf("after the drain: reconnects %d, acked %d", st.Reconnects, st.Acked)
	}
}

// A full trunk drops its oldest (counted at the site), and the designated router counts the
// numbers it never got as gaps.
func TestUplinkOverflowDropsAndCountsGaps(t *testing.T) {
	pki := servertest.NewPKI(t)
	dr := startDR(t, pki, "")
	proxy := servertest.StartProxy(t, dr.Addr("route"))
	site := startSite(t, pki, "site-a", proxy.Addr(), t.TempDir(), func(u *config.Uplink) { u.MaxQueuedMessages = 5 })
	watch := v5(t, dr, "watch")
	watch.sub("bldg1/#", 1)
	waitLink(t, site, true)
	proxy.Cut()
	waitLink(t, site, false)
	pub := v5(t, site, "pub")
	for i := range 10 {
		pub.pub("bldg1/t", 1, fmt.Sprint(i))
	}
	if st := link(site); st.Queued != 5 || st.DroppedFull != 5 {
		t.Errorf("queued %d, dropped %d; want 5 and 5", st.Queued, st.DroppedFull)
	}
	proxy.Restore()
	waitLink(t, site, true)
	pub.pub("bldg1/marker", 1, "m")
	if got := payloads(watch.until("bldg1/marker")); fmt.Sprint(got) != "[5 6 7 8 9]" {
		t.Fatalf("the designated router got %v", got)
	}
	rs := dr.Stats(0).Route
	if rs == nil || rs.RoutedGaps != 5 || len(rs.Peers) != 1 || rs.Peers[0].Taken != 11 || rs.Peers[0].RoutedGaps != 5 {
		t.Fatalf("designated router's route stats %+v", rs)
	}
}

// A site restarted while its link is down keeps what it queued, and sends it once.
func TestUplinkSiteRestartKeepsTheQueue(t *testing.T) {
	pki := servertest.NewPKI(t)
	dr := startDR(t, pki, t.TempDir())
	proxy := servertest.StartProxy(t, dr.Addr("route"))
	data := t.TempDir()
	site := startSite(t, pki, "site-a", proxy.Addr(), data)
	watch := v5(t, dr, "watch")
	watch.sub("bldg1/#", 1)
	waitLink(t, site, true)
	pub := v5(t, site, "pub")
	pub.pub("bldg1/t", 1, "before")
	watch.expect("bldg1/t", "before")
	proxy.Cut()
	waitLink(t, site, false)
	for i := range 20 {
		pub.pub("bldg1/t", 1, fmt.Sprint(i))
	}
	_ = site.Close()
	site = startSite(t, pki, "site-a", proxy.Addr(), data)
	// The link reports itself down a moment before its trunk session lets go of the dead
	// connection's sink, so the first publish may have gone in flight to it rather than into the
	// queue; and "before" may still be in flight too, its acknowledgement cut off. What is in
	// flight is on disk and sent again (the designated router drops the duplicate): what
	// arrives is checked below.
	if st := link(site); st.Queued+st.Inflight < 20 {
		t.Fatalf("after the restart %d queued and %d in flight, want at least 20 in all", st.Queued, st.Inflight)
	}
	proxy.Restore()
	waitLink(t, site, true)
	v5(t, site, "pub2").pub("bldg1/marker", 1, "m")
	got := payloads(watch.until("bldg1/marker"))
	if fmt.Sprint(got) != fmt.Sprint(numbers(20)) {
		t.Fatalf("the designated router got %v", got)
	}
}

func numbers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}

// A query at the site goes to the designated router while the link is up, and is answered from
// the site's own retained copies, marked stale, while it is down.
func TestUplinkQueryStaleWhileDown(t *testing.T) {
	pki := servertest.NewPKI(t)
	dr := startDR(t, pki, "")
	proxy := servertest.StartProxy(t, dr.Addr("route"))
	site := startSite(t, pki, "site-a", proxy.Addr(), "")
	local := v5(t, site, "local")
	local.sub("bldg1/#", 1)
	waitLink(t, site, true)
	waitUpstream(t, site, 1)
	v5(t, dr, "dr-pub").publish(&paho.Publish{Topic: "bldg1/a", QoS: 1, Retain: true, Payload: []byte("1")})
	local.expect("bldg1/a", "1") // came down, and is retained here too
	query := func() ([]string, bool) {
		t.Helper()
		resp, err := (&http.Client{Timeout: linkWait}).Get("http://" + site.Addr("http") + "/v1/retained/bldg1/%23")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var events []struct {
			Topic string `json:"topic"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &events) != nil {
			t.Fatalf("GET /v1/retained: %s %s", resp.Status, body)
		}
		var topics []string
		for _, e := range events {
			topics = append(topics, e.Topic)
		}
		return topics, resp.Header.Get("X-Tern-Stale") == "true"
	}
	proxy.Cut()
	waitLink(t, site, false)
	v5(t, dr, "dr-pub2").publish(&paho.Publish{Topic: "bldg1/b", QoS: 1, Retain: true, Payload: []byte("2")})
	if topics, stale := query(); !stale || fmt.Sprint(topics) != "[bldg1/a]" {
		t.Fatalf("while down: %v, stale %v", topics, stale)
	}
	proxy.Restore()
	waitLink(t, site, true)
	// Queried while the site's own copy of bldg1/b may still be on its way: the answer is the
	// designated router's, which has both.
	if topics, stale := query(); stale || len(topics) != 2 {
		t.Fatalf("while up: %v, stale %v", topics, stale)
	}
	if st := link(site); st.Queries != 2 || st.QueriesFailed != 1 {
		t.Errorf("queries %d, failed %d", st.Queries, st.QueriesFailed)
	}
}

// With authentication on at the designated router, a site without the route grant on the
// namespace has its forwarded messages and its subscriptions refused; a site with it does not.
func TestUplinkNeedsTheRouteGrant(t *testing.T) {
	pki := servertest.NewPKI(t)
	dr := startDR(t, pki, "")
	grant := func(s string) auth.Grant {
		g, err := auth.ParseGrant(s)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if err := dr.Auth.PutUser(auth.User{Name: "site-a", Grants: []auth.Grant{grant("route:bldg1/#")}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := dr.Auth.PutUser(auth.User{Name: "watch", Grants: []auth.Grant{grant("subscribe:#")}}, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	a := startSite(t, pki, "site-a", dr.Addr("route"), "")
	c := startSite(t, pki, "site-c", dr.Addr("route"), "")
	watch := connectV5(t, dialTCP(t, dr.Addr("mqtt")), &paho.Connect{ClientID: "watch", CleanStart: true,
		Username: "watch", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true})
	watch.sub("bldg1/#", 1)
	v5(t, c, "sub-c").sub("bldg1/#", 1)
	waitLink(t, a, true)
	waitLink(t, c, true)
	eventually(t, linkWait, "site c's subscription refused", func() bool { return link(c).SubscribeRefused > 0 })
	v5(t, c, "pub-c").pub("bldg1/t", 1, "from c")
	eventually(t, linkWait, "site c's message refused", func() bool { return link(c).RefusedUpstream == 1 })
	// Site c's message was refused before site a's was published: the watcher's first message
	// is site a's.
	v5(t, a, "pub-a").pub("bldg1/t", 1, "from a")
	if m := watch.expect("bldg1/t", "from a"); sender(m) != "site-a" {
		t.Errorf("sender %q", sender(m))
	}
}

// The site's interest follows its sessions: a subscription made or dropped here is made or
// dropped upstream, and only what the site wants comes down.
func TestUplinkFollowsInterest(t *testing.T) {
	pki := servertest.NewPKI(t)
	dr := startDR(t, pki, "")
	site := startSite(t, pki, "site-a", dr.Addr("route"), "")
	waitLink(t, site, true)
	local := v5(t, site, "local")
	local.sub("bldg1/a", 1)
	local.sub("$share/g/+/b", 1) // goes up as bldg1/b
	local.sub("other/#", 1)      // not this link's namespace
	waitUpstream(t, site, 2)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := local.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"bldg1/a"}}); err != nil {
		t.Fatal(err)
	}
	waitUpstream(t, site, 1)
	drPub := v5(t, dr, "dr-pub")
	drPub.pub("bldg1/a", 1, "no longer wanted")
	drPub.pub("bldg1/b", 1, "wanted")
	local.expect("bldg1/b", "wanted")
	// Counted once published here, just after the local delivery.
	eventually(t, waitTimeout, "one message came down", func() bool { return link(site).Received == 1 })
}
