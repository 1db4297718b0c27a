package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
)

// ErrForbiddenTarget refuses a webhook URL that points into the broker's own network.
var ErrForbiddenTarget = errors.New("webhook target not allowed")

// forbidden reports whether ip is loopback, private, link-local, unspecified or multicast: a
// webhook there could make the broker probe or attack its own network (server-side request
// forgery).
func forbidden(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() ||
		// 100.64.0.0/10 (carrier-grade NAT) and 0.0.0.0/8 are not "private" to Go but are not the
		// public internet either.
		netip.MustParsePrefix("100.64.0.0/10").Contains(ip) || netip.MustParsePrefix("0.0.0.0/8").Contains(ip)
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
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && forbidden(ip) {
		return nil, fmt.Errorf("%w: %s is a loopback, private or link-local address", ErrForbiddenTarget, ip)
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
		if forbidden(ap.Addr()) {
			return fmt.Errorf("%w: %s is a loopback, private or link-local address", ErrForbiddenTarget, ap.Addr())
		}
		return nil
	}
	return d
}
