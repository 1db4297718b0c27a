package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/v2"
)

// Route configures tiered routing (WAVEMQ's tiers): a site router forwards the namespaces of its
// uplinks to their designated routers, and a designated router takes what sites forward on its
// peer listener. A namespace is a first topic level ("bldg1" covers bldg1/#).
type Route struct {
	// ID is this router's stable id, carried with what it forwards; empty: generated once and
	// kept in the data directory.
	ID string `koanf:"id"`
	// Listen is the peer listener of a designated router: MQTT 5 over TLS ([tls], or
	// [tls.listeners.route]) with client certificates required.
	Listen string `koanf:"listen"`
	// Designated lists the namespaces this router is the designated router for; peer traffic
	// outside them is refused.
	Designated []string `koanf:"designated"`
	// Uplinks are this router's links to designated routers ([[route.uplink]]).
	Uplinks []Uplink `koanf:"uplink"`
}

// Uplink is a site router's link to a designated router.
type Uplink struct {
	// Name names the link in stats, metrics and events, and its trunk session ($uplink/<name>).
	Name string `koanf:"name"`
	// URL is the designated router's peer listener, mqtts://host:port.
	URL string `koanf:"url"`
	// Namespaces go up this link (everything published under them here) and come down it
	// (what local sessions subscribe to under them).
	Namespaces []string `koanf:"namespaces"`
	// CertFile and KeyFile are this site's client certificate; CAFile the authorities the
	// designated router's certificate must chain to (empty: the system's), ServerName the name it
	// must carry (empty: the URL's host).
	CertFile   string `koanf:"cert_file"`
	KeyFile    string `koanf:"key_file"`
	CAFile     string `koanf:"ca_file"`
	ServerName string `koanf:"server_name"`
	// Identity is what the designated router takes this site's certificate to name (empty: its
	// subject CN, lower-cased, tern's default); it is part of the session's client id there.
	Identity string `koanf:"identity"`
	// SessionExpiry is how long the designated router keeps this site's session (and what it
	// queued for the site) while the link is down.
	SessionExpiry time.Duration `koanf:"session_expiry"`
	// The trunk queue's limits, as for sessions.
	MaxQueuedMessages int           `koanf:"max_queued_messages"`
	MaxQueuedBytes    int64         `koanf:"max_queued_bytes"`
	MaxAge            time.Duration `koanf:"max_age"`
	QueueFullPolicy   string        `koanf:"queue_full_policy"`
	// Inflight is how many forwarded messages may await the designated router's acknowledgement
	// (further capped by its Receive Maximum and session.max_inflight).
	Inflight int `koanf:"inflight"`
	// DrainRate paces forwarding, in messages per second, while a backlog drains; 0: as fast as
	// the link takes them.
	DrainRate float64 `koanf:"drain_rate"`
	// KeepAlive is the MQTT keep alive of the link: a link that stays silent for 1.5 times this
	// (a blackholed connection) is closed and dialled again.
	KeepAlive time.Duration `koanf:"keep_alive"`
	// ReconnectMax bounds the wait between two attempts to connect (exponential back-off from
	// a quarter second, with jitter).
	ReconnectMax time.Duration `koanf:"reconnect_max"`
}

// DefaultUplink is what an uplink's keys that are not set default to.
func DefaultUplink() Uplink {
	return Uplink{
		SessionExpiry:     168 * time.Hour,
		MaxQueuedMessages: 100000,
		MaxQueuedBytes:    1 << 30,
		QueueFullPolicy:   "drop_oldest",
		Inflight:          256,
		KeepAlive:         30 * time.Second,
		ReconnectMax:      30 * time.Second,
	}
}

// QueueLimits are the trunk queue's limits in the form session queue rules take.
func (u Uplink) QueueLimits() QueueLimits {
	return QueueLimits{MaxQueuedMessages: u.MaxQueuedMessages, MaxQueuedBytes: u.MaxQueuedBytes,
		MaxQueueAge: u.MaxAge, QueueFullPolicy: u.QueueFullPolicy}
}

// TrunkClientID is the client id of an uplink's trunk session.
func TrunkClientID(name string) string { return "$uplink/" + name }

// uplinkEnvPrefix is how environment variables of [[route.uplink]] entries begin:
// TERN_ROUTE__UPLINK__<index>__<KEY>, e.g. TERN_ROUTE__UPLINK__0__URL.
const uplinkEnvPrefix = "route.uplink."

// loadUplinks builds the uplinks from the file's [[route.uplink]] tables and the environment's
// TERN_ROUTE__UPLINK__<i>__<KEY> variables, each entry starting from DefaultUplink, so a key an
// entry leaves out gets its default while an explicit zero stays zero.
func loadUplinks(k *koanf.Koanf, environ func() []string) ([]Uplink, error) {
	var raws []map[string]any
	switch v := k.Get("route.uplink").(type) {
	case nil:
	case []any:
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("route.uplink[%d]: not a table", i)
			}
			raws = append(raws, m)
		}
	case []map[string]any:
		raws = v
	default:
		return nil, errors.New("route.uplink: use [[route.uplink]] tables")
	}
	env, err := uplinkEnv(environ)
	if err != nil {
		return nil, err
	}
	idx := make([]int, 0, len(env))
	for i := range env {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		if i > len(raws) {
			return nil, fmt.Errorf("TERN_ROUTE__UPLINK__%d: there are %d uplinks: the uplinks' indexes must follow on from 0", i, len(raws))
		}
		if i == len(raws) {
			raws = append(raws, map[string]any{})
		}
		m := map[string]any{}
		for key, v := range raws[i] {
			m[key] = v
		}
		for key, v := range env[i] {
			m[key] = v
		}
		raws[i] = m
	}
	out := make([]Uplink, 0, len(raws))
	for i, m := range raws {
		u := DefaultUplink()
		kk := koanf.New(".")
		for key, v := range m {
			if strings.Contains(key, ".") {
				return nil, fmt.Errorf("route.uplink[%d]: unknown key %q", i, key)
			}
			if err := kk.Set(key, v); err != nil {
				return nil, fmt.Errorf("route.uplink[%d].%s: %w", i, key, err)
			}
		}
		if err := kk.UnmarshalWithConf("", &u, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
			return nil, fmt.Errorf("route.uplink[%d]: %w", i, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// uplinkEnv collects TERN_ROUTE__UPLINK__<i>__<KEY>=value by index.
func uplinkEnv(environ func() []string) (map[int]map[string]any, error) {
	out := map[int]map[string]any{}
	if environ == nil {
		return out, nil
	}
	for _, kv := range environ() {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "TERN_") {
			continue
		}
		key := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "TERN_")), "__", ".")
		rest, ok := strings.CutPrefix(key, uplinkEnvPrefix)
		if !ok {
			continue
		}
		idx, field, ok := strings.Cut(rest, ".")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || i < 0 || i > 1000 || field == "" {
			return nil, fmt.Errorf("%s: use TERN_ROUTE__UPLINK__<index>__<KEY>", name)
		}
		if out[i] == nil {
			out[i] = map[string]any{}
		}
		var v any = value
		if field == "namespaces" {
			v = splitList(value)
		}
		out[i][field] = v
	}
	return out, nil
}

func splitList(v string) []string {
	if v == "" {
		return []string{}
	}
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// ValidNamespace reports why ns cannot be a namespace: one topic level, not empty, no wildcard,
// not a '$' level (those are the broker's own).
func ValidNamespace(ns string) error {
	switch {
	case ns == "":
		return errors.New("empty namespace")
	case strings.ContainsAny(ns, "/+#"):
		return fmt.Errorf("namespace %q: one topic level without wildcards", ns)
	case strings.HasPrefix(ns, "$"):
		return fmt.Errorf("namespace %q: '$' topics are the broker's own", ns)
	case strings.ContainsRune(ns, 0):
		return fmt.Errorf("namespace %q: contains NUL", ns)
	}
	return nil
}

// validName is for router ids, uplink names and identities that become part of client ids and
// topics: letters, digits and ._- only.
func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ValidRouterID reports whether id can be a router id.
func ValidRouterID(id string) bool { return validName(id, 64) }

func (r Route) validate(c *Config) error {
	var errs []error
	if r.ID != "" && !ValidRouterID(r.ID) {
		errs = append(errs, fmt.Errorf("route.id %q: use 1 to 64 letters, digits, '.', '_' or '-'", r.ID))
	}
	if r.Listen != "" {
		t := c.TLS.ForListener("route")
		if t.CertFile == "" || t.KeyFile == "" || t.ClientCAFile == "" {
			errs = append(errs, errors.New("route.listen: the peer listener speaks TLS and requires client certificates: "+
				"set tls.cert_file, tls.key_file and tls.client_ca_file (or the same under [tls.listeners.route])"))
		}
		if len(r.Designated) == 0 {
			errs = append(errs, errors.New("route.listen: set route.designated to the namespaces this router takes from sites"))
		}
	}
	if len(r.Designated) > 0 && r.Listen == "" {
		errs = append(errs, errors.New("route.designated: sites reach a designated router on its peer listener: set route.listen"))
	}
	seen := map[string]string{}
	for _, ns := range r.Designated {
		if err := ValidNamespace(ns); err != nil {
			errs = append(errs, fmt.Errorf("route.designated: %w", err))
		} else if seen[ns] != "" {
			errs = append(errs, fmt.Errorf("route.designated: %q listed twice", ns))
		}
		seen[ns] = "route.designated"
	}
	names := map[string]bool{}
	for i, u := range r.Uplinks {
		where := fmt.Sprintf("route.uplink[%d]", i)
		if validName(u.Name, 64) {
			where = fmt.Sprintf("route.uplink %q", u.Name)
		}
		errs = append(errs, u.validate(where, names, seen))
	}
	return errors.Join(errs...)
}

func (u Uplink) validate(where string, names map[string]bool, seen map[string]string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }
	if !validName(u.Name, 64) {
		bad("name %q: use 1 to 64 letters, digits, '.', '_' or '-'", u.Name)
	} else if names[u.Name] {
		bad("name used twice")
	}
	names[u.Name] = true
	if p, err := url.Parse(u.URL); err != nil || p.Scheme != "mqtts" || p.Hostname() == "" || p.Port() == "" {
		bad("url %q: use mqtts://host:port (the designated router's route.listen)", u.URL)
	}
	if len(u.Namespaces) == 0 {
		bad("namespaces: list the namespaces this link carries")
	}
	for _, ns := range u.Namespaces {
		if err := ValidNamespace(ns); err != nil {
			bad("%v", err)
			continue
		}
		if other := seen[ns]; other != "" {
			bad("namespace %q is also in %s: a namespace has one designated router", ns, other)
		}
		seen[ns] = where
	}
	if u.CertFile == "" || u.KeyFile == "" {
		bad("cert_file and key_file: a designated router takes only sites with a client certificate")
	}
	if u.Identity != "" && !validName(u.Identity, 128) {
		bad("identity %q: use letters, digits, '.', '_' or '-'", u.Identity)
	}
	if u.SessionExpiry < time.Second || u.SessionExpiry > 0xFFFFFFFE*time.Second {
		bad("session_expiry %s: from 1s to about 136 years", u.SessionExpiry)
	}
	if u.Inflight < 1 || u.Inflight > 65535 {
		bad("inflight %d out of range 1..65535", u.Inflight)
	}
	if u.DrainRate < 0 {
		bad("drain_rate cannot be negative")
	}
	if u.KeepAlive < time.Second || u.KeepAlive > 65535*time.Second {
		bad("keep_alive %s out of range 1s..65535s", u.KeepAlive)
	}
	if u.ReconnectMax < 250*time.Millisecond {
		bad("reconnect_max %s below 250ms", u.ReconnectMax)
	}
	if err := u.QueueLimits().validate(where); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// UplinkNamespaces lists every namespace some uplink carries, sorted.
func (r Route) UplinkNamespaces() []string {
	var out []string
	for _, u := range r.Uplinks {
		out = append(out, u.Namespaces...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}
