package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"syscall"
)

// ErrForbiddenTarget refuses a webhook URL that points into the broker's own network.
var ErrForbiddenTarget = errors.New("webhook target not allowed (webhooks.allow_private lets webhooks reach this network)")

// verdict is what the guard does with an address in a range.
type verdict uint8

const (
	allow  verdict = iota
	refuse         // a webhook there could probe or attack the broker's own network
	// The range carries an IPv4 address, which is judged instead: in the last 32 bits
	// (IPv4-mapped, NAT64's /96, RFC 6052), or in bits 16-47 (6to4, RFC 3056).
	v4Low
	v4In6to4
)

// addrRange is one row of the guard's table.
type addrRange struct {
	prefix  netip.Prefix
	name    string // as the registry names it
	rfc     string
	verdict verdict
}

// The guard's table: every entry of the IANA IPv4 and IPv6 special-purpose address registries
// (iana-ipv4-special-registry, iana-ipv6-special-registry, as of 2025), then multicast. The
// comment after each row is the registry's "Globally Reachable" column. An address is judged by
// its most specific row, so 192.0.0.9 follows its /32 and not 192.0.0.0/24. The rule: refuse what
// is not globally reachable (False, N/A, or a terminated allocation), and also the anycast
// addresses of local services (PCP, TURN, DNS-SD SRP), which the nearest server answers,
// typically the site's own gateway. Forms that carry an IPv4 address are judged by that address,
// so they are no way around the IPv4 rows; Teredo hides its client address (inverted) behind a
// relay and is refused whole. IPv6 outside 2000::/3, the global unicast space, is refused as well
// (see forbidden): the rest is reserved by the IETF, including deprecated site-local fec0::/10
// and the IPv4-compatible ::/96.
var addrRanges = sortRanges([]addrRange{
	// IPv4 special-purpose registry.
	{pfx("0.0.0.0/8"), `"This network"`, "RFC 791, section 3.2", refuse},                       // False
	{pfx("0.0.0.0/32"), `"This host on this network"`, "RFC 1122, section 3.2.1.3", refuse},    // False
	{pfx("10.0.0.0/8"), "Private-Use", "RFC 1918", refuse},                                     // False
	{pfx("100.64.0.0/10"), "Shared Address Space", "RFC 6598", refuse},                         // False
	{pfx("127.0.0.0/8"), "Loopback", "RFC 1122, section 3.2.1.3", refuse},                      // False
	{pfx("169.254.0.0/16"), "Link Local", "RFC 3927", refuse},                                  // False
	{pfx("172.16.0.0/12"), "Private-Use", "RFC 1918", refuse},                                  // False
	{pfx("192.0.0.0/24"), "IETF Protocol Assignments", "RFC 6890, section 2.1", refuse},        // False
	{pfx("192.0.0.0/29"), "IPv4 Service Continuity Prefix", "RFC 7335", refuse},                // False
	{pfx("192.0.0.8/32"), "IPv4 dummy address", "RFC 7600", refuse},                            // False
	{pfx("192.0.0.9/32"), "Port Control Protocol Anycast", "RFC 7723", refuse},                 // True: local service
	{pfx("192.0.0.10/32"), "Traversal Using Relays around NAT Anycast", "RFC 8155", refuse},    // True: local service
	{pfx("192.0.0.170/32"), "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 section 2.2", refuse}, // False
	{pfx("192.0.0.171/32"), "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 section 2.2", refuse}, // False
	{pfx("192.0.2.0/24"), "Documentation (TEST-NET-1)", "RFC 5737", refuse},                    // False
	{pfx("192.31.196.0/24"), "AS112-v4", "RFC 7535", allow},                                    // True
	{pfx("192.52.193.0/24"), "AMT", "RFC 7450", allow},                                         // True
	{pfx("192.88.99.0/24"), "Deprecated (6to4 Relay Anycast)", "RFC 7526", refuse},             // terminated
	{pfx("192.88.99.2/32"), "6a44-relay anycast address", "RFC 6751", refuse},                  // False
	{pfx("192.168.0.0/16"), "Private-Use", "RFC 1918", refuse},                                 // False
	{pfx("192.175.48.0/24"), "Direct Delegation AS112 Service", "RFC 7534", allow},             // True
	{pfx("198.18.0.0/15"), "Benchmarking", "RFC 2544", refuse},                                 // False
	{pfx("198.51.100.0/24"), "Documentation (TEST-NET-2)", "RFC 5737", refuse},                 // False
	{pfx("203.0.113.0/24"), "Documentation (TEST-NET-3)", "RFC 5737", refuse},                  // False
	{pfx("240.0.0.0/4"), "Reserved", "RFC 1112, section 4", refuse},                            // False
	{pfx("255.255.255.255/32"), "Limited Broadcast", "RFC 8190, RFC 919 section 7", refuse},    // False

	// IPv6 special-purpose registry.
	{pfx("::1/128"), "Loopback Address", "RFC 4291", refuse},                                       // False
	{pfx("::/128"), "Unspecified Address", "RFC 4291", refuse},                                     // False
	{pfx("::ffff:0:0/96"), "IPv4-mapped Address", "RFC 4291", v4Low},                               // False: it is IPv4
	{pfx("64:ff9b::/96"), "IPv4-IPv6 Translat.", "RFC 6052", v4Low},                                // True
	{pfx("64:ff9b:1::/48"), "IPv4-IPv6 Translat.", "RFC 8215", refuse},                             // False
	{pfx("100::/64"), "Discard-Only Address Block", "RFC 6666", refuse},                            // False
	{pfx("100:0:0:1::/64"), "Dummy IPv6 Prefix", "RFC 9780", refuse},                               // False
	{pfx("2001::/23"), "IETF Protocol Assignments", "RFC 2928", refuse},                            // False
	{pfx("2001::/32"), "TEREDO", "RFC 4380, RFC 8190", refuse},                                     // N/A
	{pfx("2001:1::1/128"), "Port Control Protocol Anycast", "RFC 7723", refuse},                    // True: local service
	{pfx("2001:1::2/128"), "Traversal Using Relays around NAT Anycast", "RFC 8155", refuse},        // True: local service
	{pfx("2001:1::3/128"), "DNS-SD Service Registration Protocol Anycast", "RFC 9665", refuse},     // True: local service
	{pfx("2001:2::/48"), "Benchmarking", "RFC 5180, RFC Errata 1752", refuse},                      // False
	{pfx("2001:3::/32"), "AMT", "RFC 7450", allow},                                                 // True
	{pfx("2001:4:112::/48"), "AS112-v6", "RFC 7535", allow},                                        // True
	{pfx("2001:10::/28"), "Deprecated (previously ORCHID)", "RFC 4843", refuse},                    // terminated
	{pfx("2001:20::/28"), "ORCHIDv2", "RFC 7343", allow},                                           // True
	{pfx("2001:30::/28"), "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", allow}, // True
	{pfx("2001:db8::/32"), "Documentation", "RFC 3849", refuse},                                    // False
	{pfx("2002::/16"), "6to4", "RFC 3056", v4In6to4},                                               // N/A
	{pfx("2620:4f:8000::/48"), "Direct Delegation AS112 Service", "RFC 7534", allow},               // True
	{pfx("3fff::/20"), "Documentation", "RFC 9637", refuse},                                        // False
	{pfx("5f00::/16"), "Segment Routing (SRv6) SIDs", "RFC 9602", refuse},                          // False
	{pfx("fc00::/7"), "Unique-Local", "RFC 4193, RFC 8190", refuse},                                // False
	{pfx("fe80::/10"), "Link-Local Unicast", "RFC 4291", refuse},                                   // False

	// Not in those registries.
	{pfx("224.0.0.0/4"), "Multicast", "RFC 5771", refuse},
	{pfx("ff00::/8"), "Multicast", "RFC 4291", refuse},
})

// globalUnicast is the IPv6 space IANA allocates for unicast (RFC 4291, section 2.4).
var globalUnicast = pfx("2000::/3")

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// sortRanges puts the most specific rows first, so the first row containing an address is the
// one that judges it.
func sortRanges(rs []addrRange) []addrRange {
	slices.SortStableFunc(rs, func(a, b addrRange) int { return cmp.Compare(b.prefix.Bits(), a.prefix.Bits()) })
	return rs
}

// forbidden returns why a webhook may not connect to ip, or "" if it may.
func forbidden(ip netip.Addr) string {
	ip = ip.WithZone("") // a zone would keep the address out of every prefix
	if !ip.IsValid() {
		return "not an address"
	}
	for _, r := range addrRanges {
		if !r.prefix.Contains(ip) {
			continue
		}
		switch r.verdict {
		case refuse:
			return fmt.Sprintf("in %s (%s, %s)", r.prefix, r.name, r.rfc)
		case v4Low, v4In6to4:
			v4 := embeddedIPv4(ip, r.verdict)
			if why := forbidden(v4); why != "" {
				return fmt.Sprintf("in %s (%s, %s) and carries %s, which is %s", r.prefix, r.name, r.rfc, v4, why)
			}
			return ""
		}
		return "" // an allowed row
	}
	if ip.Is6() && !globalUnicast.Contains(ip) {
		return "outside the IPv6 global unicast space 2000::/3 (RFC 4291)"
	}
	// The table covers these; the standard library's view is kept as a second opinion.
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return "loopback, private, link-local, multicast or unspecified"
	}
	return ""
}

// embeddedIPv4 is the IPv4 address an IPv4-carrying IPv6 address holds.
func embeddedIPv4(ip netip.Addr, where verdict) netip.Addr {
	b := ip.As16()
	if where == v4In6to4 {
		return netip.AddrFrom4([4]byte(b[2:6]))
	}
	return netip.AddrFrom4([4]byte(b[12:16]))
}

// checkURL validates a webhook URL: http or https, a host, and (unless allowPrivate) a host that
// is not a forbidden address literal or "localhost". Names are checked again when dialled, since
// DNS can change its answer.
func checkURL(raw string, allowPrivate bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %q: the scheme must be http or https", raw)
	}
	if u.Hostname() == "" || u.User != nil {
		return nil, fmt.Errorf("url %q: needs a host and no user info", raw)
	}
	if allowPrivate {
		return u, nil
	}
	if u.Hostname() == "localhost" {
		return nil, fmt.Errorf("%w: %s is loopback", ErrForbiddenTarget, u.Host)
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		if why := forbidden(ip); why != "" {
			return nil, fmt.Errorf("%w: %s is %s", ErrForbiddenTarget, ip, why)
		}
	}
	return u, nil
}

// guardedDialer refuses connections to forbidden addresses after name resolution, so a name that
// resolves (or later re-resolves) to a private address is refused too.
func guardedDialer(allowPrivate bool) *net.Dialer {
	d := &net.Dialer{}
	if allowPrivate {
		return d
	}
	d.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrForbiddenTarget, address)
		}
		if why := forbidden(ap.Addr()); why != "" {
			return fmt.Errorf("%w: %s is %s", ErrForbiddenTarget, ap.Addr(), why)
		}
		return nil
	}
	return d
}
