package auth

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// BackoffConfig limits password and token guessing per client address. After Failures bad
// credentials from one address, with no quiet Window between them, the address is refused
// without any check for Base, then twice as long after each further failure, up to Max. A
// success clears the address.
type BackoffConfig struct {
	Failures     int           // failures before refusing; default 5; negative disables back-off
	Window       time.Duration // quiet time after which failures are forgotten; default 1 minute
	Base         time.Duration // first refusal period; default 1 second
	Max          time.Duration // longest refusal period; default 5 minutes
	MaxAddresses int           // addresses tracked at once (least recently failing forgotten); default 10,000
}

func (c BackoffConfig) withDefaults() BackoffConfig {
	if c.Failures == 0 {
		c.Failures = 5
	}
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	if c.Base <= 0 {
		c.Base = time.Second
	}
	if c.Max <= 0 {
		c.Max = 5 * time.Minute
	}
	if c.Max < c.Base {
		c.Max = c.Base
	}
	if c.MaxAddresses <= 0 {
		c.MaxAddresses = 10000
	}
	return c
}

type failures struct {
	count int
	last  time.Time // latest failure
	until time.Time // refused before this
}

// backoff is the per-address failure table.
type backoff struct {
	cfg BackoffConfig
	mu  sync.Mutex
	tab *simplelru.LRU[string, failures]
}

func newBackoff(cfg BackoffConfig) *backoff {
	return &backoff{cfg: cfg, tab: newLRU[failures](cfg.MaxAddresses)}
}

func (b *backoff) disabled() bool { return b.cfg.Failures < 0 }

// addressKey reduces a remote address to what one client controls: the host without the port
// (every connection has a new port), and for IPv6 the /64 network, because one host usually owns a
// whole /64 and could otherwise step through addresses to escape back-off.
func addressKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host // a Unix socket path, or a face's own label
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// blocked reports whether key is refused at now, and until when.
func (b *backoff) blocked(key string, now time.Time) (bool, time.Time) {
	if key == "" || b.disabled() {
		return false, time.Time{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.tab.Get(key)
	if ok && now.Before(f.until) {
		return true, f.until
	}
	return false, time.Time{}
}

// fail records bad credentials from key at now.
func (b *backoff) fail(key string, now time.Time) {
	if key == "" || b.disabled() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f, _ := b.tab.Get(key)
	// The quiet window counts from the end of any refusal, so a refusal longer than the window
	// does not wipe the count and let the next round start again from Base.
	quietSince := f.last
	if f.until.After(quietSince) {
		quietSince = f.until
	}
	if f.count > 0 && now.Sub(quietSince) > b.cfg.Window {
		f = failures{}
	}
	f.count++
	f.last = now
	if over := f.count - b.cfg.Failures; over >= 0 {
		d := b.cfg.Base
		for i := 0; i < over && d < b.cfg.Max; i++ {
			d *= 2
		}
		f.until = now.Add(min(d, b.cfg.Max))
	}
	b.tab.Add(key, f)
}

// success forgets key.
func (b *backoff) success(key string) {
	if key == "" || b.disabled() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tab.Remove(key)
}
