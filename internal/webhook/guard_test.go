package webhook

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// guardCase is one entry of the IANA special-purpose registries (or one of the extra rules):
// addresses inside it, which are refused when refuse is set (and allowed otherwise), and public
// neighbours just outside it, which must stay allowed.
type guardCase struct {
	entry     string
	refuse    bool
	in        []string
	neighbour []string
}

// guardCases lists every entry of the IPv4 and IPv6 special-purpose address registries, with
// tern's decision stated here independently of the table in guard.go.
var guardCases = []guardCase{
	// IPv4 special-purpose registry.
	{"0.0.0.0/8", true, []string{"0.1.2.3", "0.255.255.255"}, []string{"1.0.0.1"}},
	{"0.0.0.0/32", true, []string{"0.0.0.0"}, []string{"1.0.0.1"}},
	{"10.0.0.0/8", true, []string{"10.0.0.1", "10.255.255.255"}, []string{"9.255.255.254", "11.0.0.1"}},
	{"100.64.0.0/10", true, []string{"100.64.0.1", "100.127.255.254"}, []string{"100.63.255.254", "100.128.0.1"}},
	{"127.0.0.0/8", true, []string{"127.0.0.1", "127.1.2.3"}, []string{"126.255.255.254", "128.0.0.1"}},
	{"169.254.0.0/16", true, []string{"169.254.169.254"}, []string{"169.253.255.254", "169.255.0.1"}},
	{"172.16.0.0/12", true, []string{"172.16.0.1", "172.31.255.255"}, []string{"172.15.255.254", "172.32.0.1"}},
	{"192.0.0.0/24", true, []string{"192.0.0.100", "192.0.0.255"}, []string{"191.255.255.254", "192.0.1.1"}},
	{"192.0.0.0/29", true, []string{"192.0.0.1", "192.0.0.7"}, []string{"192.0.1.1"}},
	{"192.0.0.8/32", true, []string{"192.0.0.8"}, []string{"192.0.1.1"}},
	// Globally reachable per the registry, but answered by the nearest server of the service,
	// usually the site's own gateway: refused like private addresses.
	{"192.0.0.9/32", true, []string{"192.0.0.9"}, []string{"192.0.1.1"}},
	{"192.0.0.10/32", true, []string{"192.0.0.10"}, []string{"192.0.1.1"}},
	{"192.0.0.170/32", true, []string{"192.0.0.170"}, []string{"192.0.1.1"}},
	{"192.0.0.171/32", true, []string{"192.0.0.171"}, []string{"192.0.1.1"}},
	{"192.0.2.0/24", true, []string{"192.0.2.1"}, []string{"192.0.3.1"}},
	{"192.31.196.0/24", false, []string{"192.31.196.1"}, []string{"192.31.197.1"}},
	{"192.52.193.0/24", false, []string{"192.52.193.1"}, []string{"192.52.194.1"}},
	{"192.88.99.0/24", true, []string{"192.88.99.1"}, []string{"192.88.98.1", "192.88.100.1"}},
	{"192.88.99.2/32", true, []string{"192.88.99.2"}, []string{"192.88.100.1"}},
	{"192.168.0.0/16", true, []string{"192.168.1.1"}, []string{"192.167.255.254", "192.169.0.1"}},
	{"192.175.48.0/24", false, []string{"192.175.48.1"}, []string{"192.175.49.1"}},
	{"198.18.0.0/15", true, []string{"198.18.0.1", "198.19.255.254"}, []string{"198.17.255.254", "198.20.0.1"}},
	{"198.51.100.0/24", true, []string{"198.51.100.7"}, []string{"198.51.99.1", "198.51.101.1"}},
	{"203.0.113.0/24", true, []string{"203.0.113.9"}, []string{"203.0.112.1", "203.0.114.1"}},
	{"240.0.0.0/4", true, []string{"240.0.0.1", "250.1.2.3"}, []string{"223.255.255.254"}},
	{"255.255.255.255/32", true, []string{"255.255.255.255"}, []string{"223.255.255.254"}},
	// Not in the registry: multicast.
	{"224.0.0.0/4", true, []string{"224.0.0.1", "239.255.255.250"}, []string{"223.255.255.254"}},

	// IPv6 special-purpose registry. Entries outside 2000::/3 have no public neighbour nearby,
	// so a public address stands in.
	{"::1/128", true, []string{"::1"}, []string{"2606:4700:4700::1111"}},
	{"::/128", true, []string{"::"}, []string{"2606:4700:4700::1111"}},
	// Forms that embed an IPv4 address are judged by it: in lists refused embeddings,
	// neighbour allowed ones.
	{"::ffff:0:0/96", true, []string{"::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:198.18.0.1", "::ffff:192.0.0.9"},
		[]string{"::ffff:8.8.8.8"}},
	{"64:ff9b::/96", true, []string{"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::c000:2ff", "64:ff9b::c612:1"},
		[]string{"64:ff9b::808:808"}},
	{"64:ff9b:1::/48", true, []string{"64:ff9b:1::808:808"}, []string{"64:ff9b::808:808"}},
	{"100::/64", true, []string{"100::1"}, []string{"2606:4700:4700::1111"}},
	{"100:0:0:1::/64", true, []string{"100:0:0:1::1"}, []string{"2606:4700:4700::1111"}},
	{"2001::/23", true, []string{"2001:100::1", "2001:1ff::1", "2001:4:113::1"}, []string{"2001:200::1"}},
	{"2001::/32", true, []string{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::1"}, []string{"2001:200::1"}},
	{"2001:1::1/128", true, []string{"2001:1::1"}, []string{"2001:200::1"}},
	{"2001:1::2/128", true, []string{"2001:1::2"}, []string{"2001:200::1"}},
	{"2001:1::3/128", true, []string{"2001:1::3"}, []string{"2001:200::1"}},
	{"2001:2::/48", true, []string{"2001:2::1", "2001:2:0:ffff::1"}, []string{"2001:200::1"}},
	{"2001:3::/32", false, []string{"2001:3::1"}, []string{"2001:200::1"}},
	{"2001:4:112::/48", false, []string{"2001:4:112::1"}, []string{"2001:200::1"}},
	{"2001:10::/28", true, []string{"2001:10::1", "2001:1f::1"}, []string{"2001:200::1"}},
	{"2001:20::/28", false, []string{"2001:20::1"}, []string{"2001:200::1"}},
	{"2001:30::/28", false, []string{"2001:30::1"}, []string{"2001:200::1"}},
	{"2001:db8::/32", true, []string{"2001:db8::1", "2001:db8:ffff::1"}, []string{"2001:db7::1", "2001:db9::1"}},
	{"2002::/16", true, []string{"2002:a00:1::1", "2002:7f00:1::1", "2002:c0a8:101::1", "2002:c612:1::1"},
		[]string{"2002:808:808::1", "2003::1"}},
	{"2620:4f:8000::/48", false, []string{"2620:4f:8000::1"}, []string{"2620:4f:8001::1"}},
	{"3fff::/20", true, []string{"3fff::1", "3fff:fff::1"}, []string{"3fff:1000::1"}},
	{"5f00::/16", true, []string{"5f00::1"}, []string{"2606:4700:4700::1111"}},
	{"fc00::/7", true, []string{"fc00::1", "fd12:3456::1"}, []string{"2606:4700:4700::1111"}},
	{"fe80::/10", true, []string{"fe80::1", "fe80::1%eth0"}, []string{"2606:4700:4700::1111"}},
	// Not in the registry: multicast, and everything outside the global unicast space 2000::/3
	// (reserved by the IETF; deprecated site-local, IPv4-compatible and IPv4-translated forms).
	{"ff00::/8", true, []string{"ff02::1", "ff0e::1"}, []string{"2606:4700:4700::1111"}},
	{"2000::/3", false, []string{"2000::1", "2a00:1450:4001::1", "2001:4860:4860::8888"},
		[]string{"fec0::1", "::10.0.0.1", "::8.8.8.8", "::ffff:0:a00:1", "4000::1", "1000::1"}},
}

// TestGuardEveryRegistryEntry checks each address both where a webhook is created (the URL) and
// where it is dialled (the resolved address).
func TestGuardEveryRegistryEntry(t *testing.T) {
	for _, c := range guardCases {
		for _, a := range c.in {
			check(t, c.entry, a, c.refuse)
		}
		for _, a := range c.neighbour {
			// The neighbours of 2000::/3 are outside it, hence refused.
			check(t, c.entry, a, c.entry == "2000::/3")
		}
	}
}

func check(t *testing.T, entry, addr string, wantRefused bool) {
	t.Helper()
	ip := netip.MustParseAddr(addr)
	host := ip.String()
	if ip.Is6() {
		host = "[" + strings.ReplaceAll(host, "%", "%25") + "]"
	}
	_, err := checkURL("http://"+host+"/hook", false)
	if got := errors.Is(err, ErrForbiddenTarget); got != wantRefused {
		t.Errorf("%s (%s): creation refused %v (%v), want %v", addr, entry, got, err, wantRefused)
	}
	if err != nil && !wantRefused {
		t.Errorf("%s (%s): %v", addr, entry, err)
	}
	control := guardedDialer(false).ControlContext
	err = control(context.Background(), "tcp", netip.AddrPortFrom(ip, 443).String(), nil)
	if got := errors.Is(err, ErrForbiddenTarget); got != wantRefused {
		t.Errorf("%s (%s): dial refused %v (%v), want %v", addr, entry, got, err, wantRefused)
	}
}

// TestGuardDialsRefusedName: a name is checked when dialled, so one that resolves to loopback
// is refused then; allow_private lets it through.
func TestGuardDialsRefusedName(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := guardedDialer(false).DialContext(ctx, "tcp", net.JoinHostPort("localhost", port)); !errors.Is(err, ErrForbiddenTarget) {
		t.Fatalf("dial localhost: %v", err)
	}
	c, err := guardedDialer(true).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("allowed dial: %v", err)
	}
	c.Close()
}

// TestGuardTableCovered: every row of the guard's table has its cases above, with the same
// decision, and every case names a row (or the 2000::/3 rule).
func TestGuardTableCovered(t *testing.T) {
	cases := map[string]guardCase{}
	for _, c := range guardCases {
		cases[netip.MustParsePrefix(c.entry).String()] = c
	}
	rows := map[string]bool{}
	for _, r := range addrRanges {
		rows[r.prefix.String()] = true
		c, ok := cases[r.prefix.String()]
		if !ok {
			t.Errorf("no test case for %s (%s)", r.prefix, r.name)
			continue
		}
		if c.refuse != (r.verdict != allow) || len(c.in) == 0 || len(c.neighbour) == 0 {
			t.Errorf("%s: the test says refuse=%v with %d addresses in and %d neighbours; the table's verdict is %d",
				r.prefix, c.refuse, len(c.in), len(c.neighbour), r.verdict)
		}
	}
	for e := range cases {
		if !rows[e] && e != globalUnicast.String() {
			t.Errorf("test case %s has no row in the table", e)
		}
	}
	// 25 IPv4 registry entries (one of them two addresses), 25 IPv6 ones, two multicast blocks.
	if len(addrRanges) != 26+25+2 {
		t.Errorf("%d rows", len(addrRanges))
	}
	_, err := checkURL("http://198.18.0.1/", false)
	if err == nil || !strings.Contains(err.Error(), "198.18.0.0/15 (Benchmarking, RFC 2544)") {
		t.Errorf("the refusal should name the range: %v", err)
	}
	_, err = checkURL("http://[64:ff9b::a00:1]/", false)
	if err == nil || !strings.Contains(err.Error(), "carries 10.0.0.1, which is in 10.0.0.0/8 (Private-Use, RFC 1918)") {
		t.Errorf("the refusal should name the embedded address: %v", err)
	}
}
