// Package config loads tern's configuration: embedded defaults, then a TOML file, then TERN_*
// environment variables, then command-line flags, each overriding the one before.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/ternmq/tern/internal/auth"
)

// Config is the whole configuration. TOML keys are the koanf tags; environment variables are
// TERN_ followed by the key path in upper case with "__" between sections, e.g.
// TERN_LISTEN__MQTT=127.0.0.1:1884 or TERN_SESSION__MAX_QUEUED_MESSAGES=500.
type Config struct {
	LogLevel string `koanf:"log_level"`
	// LogFormat is "text" (slog's key=value lines) or "json" (one JSON object per line).
	LogFormat string `koanf:"log_format"`
	// DataDir holds durable state; empty keeps everything in memory.
	DataDir  string   `koanf:"data_dir"`
	Store    Store    `koanf:"store"`
	Listen   Listen   `koanf:"listen"`
	TLS      TLS      `koanf:"tls"`
	MQTT     MQTT     `koanf:"mqtt"`
	Session  Session  `koanf:"session"`
	Auth     Auth     `koanf:"auth"`
	Limits   Limits   `koanf:"limits"`
	Webhooks Webhooks `koanf:"webhooks"`
	Mailbox  Mailbox  `koanf:"mailbox"`
	HTTP     HTTP     `koanf:"http"`
	Cluster  Cluster  `koanf:"cluster"`
	// Route is tiered routing: uplinks to designated routers, and the peer listener of one.
	Route   Route   `koanf:"route"`
	Metrics Metrics `koanf:"metrics"`
	// Debug is the profiling endpoint (debug.go).
	Debug Debug `koanf:"debug"`
	// Memory is the process's memory policy (memory.go).
	Memory Memory `koanf:"memory"`
}

// Metrics configures GET /metrics on the HTTP listeners.
type Metrics struct {
	// RequireAuth puts /metrics behind credentials: the scraper needs the admin grant on the
	// resource "metrics" (admin:metrics, or a wider one such as admin:#). Off, /metrics is open
	// (counters only, no names).
	RequireAuth bool `koanf:"require_auth"`
}

// HTTP holds the HTTP face's limits.
type HTTP struct {
	MaxBody      int64         `koanf:"max_body"`      // request body (a published payload); larger gets 413
	StreamBuffer int           `koanf:"stream_buffer"` // messages waiting for one streaming subscriber
	Heartbeat    time.Duration `koanf:"heartbeat"`     // keep-alive on idle streams
	PollWait     time.Duration `koanf:"poll_wait"`     // longest long-poll of /v1/sub
	// RequestTimeout is the default wait of /v1/req for a reply.
	RequestTimeout time.Duration `koanf:"request_timeout"`
	// MailboxWait is uLightWMQ's QueueFrontTimeout and AnswerTimeout: one wait of /front?wait=1
	// and /waitForReply (a message or reply arriving starts a new one).
	MailboxWait time.Duration `koanf:"mailbox_wait"`
	// H2C serves HTTP/2 without TLS (prior knowledge) on the plain HTTP listener too.
	H2C bool `koanf:"h2c"`
	// ReadHeaderTimeout bounds reading a request's line and headers; ReadTimeout the whole
	// request, body included (a client trickling a body is cut off with 408). Neither limits
	// a response: streams, long-polls and WebSockets last as long as they need.
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"`
	ReadTimeout       time.Duration `koanf:"read_timeout"`
	// WebSocketOrigins lists Origin host patterns (path.Match, e.g. "app.example.com",
	// "*.example.com") whose pages, besides the server's own, may use the credentials a browser
	// attaches by itself (Basic, a client certificate) on every WebSocket endpoint (/v1/ws,
	// /sub, /mqtt, /mbus). A page from any other origin may connect but must authenticate
	// inside the connection (the auth frame, MQTT CONNECT, mBus's create, a bearer token).
	WebSocketOrigins []string `koanf:"websocket_origins"`
	// CORSOrigins lists the origins ("https://app.example.com", one "*" wildcard allowed as in
	// "https://*.example.com", or "*" for any) whose pages may call the HTTP API and its streams
	// from the browser; preflights are answered. Empty: CORS is off. Credentials are not allowed
	// across origins (no cookies, cached Basic or client certificates): such a page sends an
	// Authorization header itself.
	CORSOrigins []string `koanf:"cors_origins"`
}

// Cluster makes this tern one node of a cluster (see cluster.go); off while Listen is empty.
type Cluster struct {
	// NodeID names the node in the cluster, for good (its raft server id; with [tls], its
	// certificate's identity).
	NodeID string `koanf:"node_id"`
	// Listen is where raft and the node links are served (one listener for both).
	Listen string `koanf:"listen"`
	// Advertise is the address the other nodes dial to reach this one; empty: Listen.
	Advertise string `koanf:"advertise"`
	// Join lists cluster addresses of nodes to ask for membership when this node has no cluster
	// state yet; a node with no state and an empty list starts a new cluster.
	Join []string `koanf:"join"`
	// Replicas is how many nodes keep a copy of replicated session queues (used from the next
	// stage on; accepted and checked now).
	Replicas int `koanf:"replicas"`
}

// Mailbox configures the per-identity mailboxes (uLightWMQ's API).
type Mailbox struct {
	// TTL is how long a message is kept; 0 means 7 days.
	TTL time.Duration `koanf:"ttl"`
}

// Webhooks bounds webhook delivery (POST /v1/webhooks).
type Webhooks struct {
	// AllowPrivate lets webhooks target loopback, private and link-local addresses; off, such
	// targets are refused (server-side request forgery).
	AllowPrivate bool          `koanf:"allow_private"`
	Timeout      time.Duration `koanf:"timeout"`
	BackoffBase  time.Duration `koanf:"backoff_base"`
	BackoffMax   time.Duration `koanf:"backoff_max"`
	MaxAttempts  int           `koanf:"max_attempts"`
	MaxHooks     int           `koanf:"max_hooks"`
}

// Auth configures who may connect and what they may do. Users, groups and tokens live in the
// data directory (tern user, tern grant, tern token); this section holds the policies around them.
// With no user, token or URL and no anonymous access, tern is open: every client may do
// everything, which it allows only on loopback listeners unless AllowOpen is set.
type Auth struct {
	// AllowOpen lets an unconfigured (open) tern listen beyond loopback.
	AllowOpen bool `koanf:"allow_open"`
	// AllowAnonymous admits clients without credentials, with AnonymousGrants only.
	AllowAnonymous  bool     `koanf:"allow_anonymous"`
	AnonymousGrants []string `koanf:"anonymous_grants"`
	// DefaultGrants are given to every authenticated client, e.g. "publish:users/%u/#".
	DefaultGrants []string `koanf:"default_grants"`
	// SuperGroup names a group whose members may do everything.
	SuperGroup string `koanf:"super_group"`
	// URL asks an external service; URLStyle is "json" (a JSON contract) or "bearer" (isimud's:
	// the bearer token forwarded with GET, 2xx allows with URLBearerGrants).
	URL             string        `koanf:"url"`
	URLStyle        string        `koanf:"url_style"`
	URLTimeout      time.Duration `koanf:"url_timeout"`
	URLCacheTTL     time.Duration `koanf:"url_cache_ttl"`
	URLBearerGrants []string      `koanf:"url_bearer_grants"`
	// After BackoffFailures bad credentials from one address, it is refused for a growing time,
	// up to BackoffMax. Negative failures disable the back-off.
	BackoffFailures int           `koanf:"backoff_failures"`
	BackoffMax      time.Duration `koanf:"backoff_max"`
	// The cost of new argon2id password hashes: memory in KiB, passes, lanes. A stored hash keeps
	// its own cost and is re-hashed with these at its next successful login. MaxConcurrentHashes
	// bounds the hashes computed at once (each holds its memory; 0: one per CPU).
	PasswordHashMemoryKiB int `koanf:"password_hash_memory_kib"`
	PasswordHashPasses    int `koanf:"password_hash_passes"`
	PasswordHashThreads   int `koanf:"password_hash_threads"`
	MaxConcurrentHashes   int `koanf:"max_concurrent_hashes"`
}

// Limits bound what clients may take; 0 means no limit. Refusals are counted in the metrics and
// logged at most once per LogInterval per cause.
type Limits struct {
	MaxConnections            int `koanf:"max_connections"`
	MaxConnectionsPerIdentity int `koanf:"max_connections_per_identity"`
	// PublishRate (messages/s) and PublishBytesRate (payload bytes/s) are per identity, shared by
	// its connections. A client ahead of its rate is paused (up to MaxThrottle), then refused.
	PublishRate      float64       `koanf:"publish_rate"`
	PublishBurst     int           `koanf:"publish_burst"`
	PublishBytesRate float64       `koanf:"publish_bytes_rate"`
	MaxThrottle      time.Duration `koanf:"max_throttle"`
	// MaxPayload caps a message's payload on every face (MQTT is also bounded by max_packet_size).
	MaxPayload  int           `koanf:"max_payload"`
	LogInterval time.Duration `koanf:"log_interval"`
}

// Store tunes the durable store in DataDir.
type Store struct {
	// Sync is "always" (a QoS 1/2 publish is acknowledged only once on disk; concurrent
	// publishers share fsyncs) or "interval" (fsync every SyncInterval: faster, but a power cut
	// loses what was acknowledged since the last one; a process crash alone loses nothing).
	Sync         string        `koanf:"sync"`
	SyncInterval time.Duration `koanf:"sync_interval"`
	// CacheBytes is the block cache for reading queues back from disk.
	CacheBytes int64 `koanf:"cache_bytes"`
	// AcceptCorruption starts tern on a data directory whose write-ahead log is damaged, losing
	// what follows the damage (the damaged log is kept beside it as damaged-*.wal). Off, such a
	// directory is refused and left untouched.
	AcceptCorruption bool `koanf:"accept_corruption"`
}

// Listen holds the listener addresses; an empty address disables that listener.
type Listen struct {
	// MQTT is plain MQTT over TCP.
	MQTT string `koanf:"mqtt"`
	// MQTTTLS is MQTT over TLS (needs tls.cert_file and tls.key_file).
	MQTTTLS string `koanf:"mqtt_tls"`
	// HTTP serves MQTT over WebSocket at /mqtt, plus /metrics and /healthz.
	HTTP string `koanf:"http"`
	// HTTPS is HTTP over TLS, so WebSocket clients get wss://.
	HTTPS string `koanf:"https"`
	// Unix is the path of a Unix socket speaking MQTT.
	Unix string `koanf:"unix"`
	// MBus and MBusUnix speak the mBus protocol over TCP and a Unix socket; off unless set (mBus
	// used 127.0.0.1:8000 and "/tmp/mbus-server-uds:0", a path taken literally).
	MBus     string `koanf:"mbus"`
	MBusUnix string `koanf:"mbus_unix"`
	// MBusTLS is mBus over TLS ([tls], or [tls.listeners.mbus_tls]). mBus over WebSocket
	// (subprotocol "mbus") is at /mbus on the HTTP and HTTPS listeners.
	MBusTLS string `koanf:"mbus_tls"`
	// MBusUnixTLS is mBus over TLS on a Unix socket (mBus's udss; [tls], or
	// [tls.listeners.mbus_unix_tls]).
	MBusUnixTLS string `koanf:"mbus_unix_tls"`
	// MBusWS and MBusWSS are mBus over WebSocket (and over TLS) on listeners of their own where
	// any path is mBus, as mbus-broker's WebSocket listener is (its browser client connects with
	// no path); off unless set.
	MBusWS  string `koanf:"mbus_ws"`
	MBusWSS string `koanf:"mbus_wss"`
	// UnixMode is the permission of the Unix socket files, in octal ("0660": the owner and its
	// group may connect).
	UnixMode string `koanf:"unix_mode"`
}

// Network returns the listeners that bind a network address rather than a Unix socket path,
// set or not; checks of where tern is exposed go through it so that a new listener cannot be
// forgotten (TestListenNetworkCoversEveryListener).
func (l Listen) Network() []string {
	return []string{l.MQTT, l.MQTTTLS, l.HTTP, l.HTTPS, l.MBus, l.MBusTLS, l.MBusWS, l.MBusWSS}
}

// SocketMode is UnixMode parsed ("" is the default, 0660).
func (l Listen) SocketMode() (os.FileMode, error) {
	if l.UnixMode == "" {
		return 0o660, nil
	}
	m, err := strconv.ParseUint(l.UnixMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("listen.unix_mode %q: want an octal permission such as 0660", l.UnixMode)
	}
	return os.FileMode(m), nil
}

// TLS names the server certificate for every TLS listener and, for mutual TLS, the authority
// client certificates must chain to. Listeners overrides any of them for one TLS listener
// ("mqtt_tls" or "https"). The files are read again on SIGHUP.
type TLS struct {
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// ClientCAFile turns on client certificates: one signed by this CA identifies its client (the
	// certificate's CN, lower-cased, or the SAN IdentitySAN names: "email", "dns" or "uri").
	ClientCAFile string `koanf:"client_ca_file"`
	// RequireClientCert refuses clients without such a certificate.
	RequireClientCert bool   `koanf:"require_client_cert"`
	IdentitySAN       string `koanf:"identity_san"`
	// Listeners holds per-listener overrides.
	Listeners map[string]TLSOverride `koanf:"listeners"`
}

// TLSOverride changes [tls] for one listener; empty fields (nil RequireClientCert) inherit.
type TLSOverride struct {
	CertFile          string `koanf:"cert_file"`
	KeyFile           string `koanf:"key_file"`
	ClientCAFile      string `koanf:"client_ca_file"`
	RequireClientCert *bool  `koanf:"require_client_cert"`
	IdentitySAN       string `koanf:"identity_san"`
}

// TLSListeners are the listeners tls.listeners may name.
var TLSListeners = []string{"mqtt_tls", "https", "mbus_tls", "mbus_unix_tls", "mbus_wss", "route"}

// ForListener is the TLS setup of the named listener: [tls] with its override applied.
func (t TLS) ForListener(name string) TLS {
	out := t
	out.Listeners = nil
	o, ok := t.Listeners[name]
	if !ok {
		return out
	}
	out.CertFile = cmp.Or(o.CertFile, out.CertFile)
	out.KeyFile = cmp.Or(o.KeyFile, out.KeyFile)
	out.ClientCAFile = cmp.Or(o.ClientCAFile, out.ClientCAFile)
	out.IdentitySAN = cmp.Or(o.IdentitySAN, out.IdentitySAN)
	if o.RequireClientCert != nil {
		out.RequireClientCert = *o.RequireClientCert
	}
	return out
}

// MQTT holds protocol limits of the MQTT face.
type MQTT struct {
	MaxPacketSize     int           `koanf:"max_packet_size"`
	ReceiveMaximum    int           `koanf:"receive_maximum"`
	MaxKeepAlive      int           `koanf:"max_keepalive"`
	TopicAliasMaximum int           `koanf:"topic_alias_maximum"`
	MaxClientIDLength int           `koanf:"max_client_id_length"`
	ConnectTimeout    time.Duration `koanf:"connect_timeout"`
	// MaxConnectSize caps a CONNECT (before login); ConnectMemory bounds what every connection
	// that has not logged in holds together.
	MaxConnectSize      int           `koanf:"max_connect_size"`
	ConnectMemory       int64         `koanf:"connect_memory"`
	WriteTimeout        time.Duration `koanf:"write_timeout"`
	OutboundBuffer      int           `koanf:"outbound_buffer"`
	SlowConsumerTimeout time.Duration `koanf:"slow_consumer_timeout"`
	PublishStall        time.Duration `koanf:"publish_stall"`
	// DetachIdle is how long a parked TCP or Unix connection (or the socket under MQTT over TLS
	// or WebSocket) stays quiet before it keeps only its socket's descriptor, as a TCP or Unix
	// one does from its accept; 0: neither.
	DetachIdle time.Duration `koanf:"detach_idle"`
	// WebSocketOrigins, when not empty, restricts /mqtt to browser pages from these Origin host
	// patterns (and the server's own); others are refused. Listed origins are trusted with the
	// browser's client certificate on /mqtt as http.websocket_origins are. Empty: any origin
	// may connect, and authenticates in CONNECT unless http.websocket_origins trusts it.
	WebSocketOrigins []string `koanf:"websocket_origins"`
	MaxQoS           int      `koanf:"max_qos"`
	RetainAvailable  bool     `koanf:"retain_available"`
}

// Session holds per-session limits.
type Session struct {
	MaxInflight      int   `koanf:"max_inflight"`
	MaxInflightBytes int64 `koanf:"max_inflight_bytes"`
	QueueLimits      `koanf:",squash"`
	// QueueRules give the sessions whose client id matches a pattern their own queue limits
	// (at most maxQueueRules: every connect tries them in order).
	QueueRules []QueueRule `koanf:"queue_rules"`
	QueueQoS0  bool        `koanf:"queue_qos0"`
	// MaxExpiry caps the session expiry interval clients may ask for; 0 means no cap.
	MaxExpiry        time.Duration `koanf:"max_expiry"`
	MaxSubscriptions int           `koanf:"max_subscriptions"`
}

// QueueLimits bound one session's queue; zero means no bound.
type QueueLimits struct {
	MaxQueuedMessages int           `koanf:"max_queued_messages"`
	MaxQueuedBytes    int64         `koanf:"max_queued_bytes"`
	MaxQueueAge       time.Duration `koanf:"max_queue_age"`
	// QueueFullPolicy is "drop_oldest" (counted per session and in total) or "refuse" (the
	// publisher gets "quota exceeded").
	QueueFullPolicy string `koanf:"queue_full_policy"`
}

// maxQueueRules bounds session.queue_rules: every connect matches its client id against them
// in order, and a session names its rule in 16 bits (uplinks add rules of their own).
const maxQueueRules = 4096

// QueueRule applies its limits to sessions whose client id matches ClientID (a glob, e.g.
// "sensor-*"). The first matching rule wins.
type QueueRule struct {
	ClientID    string `koanf:"client_id"`
	QueueLimits `koanf:",squash"`
}

// Default is the embedded configuration `tern serve` runs with: loopback listeners only.
func Default() Config {
	return Config{
		LogLevel:  "info",
		LogFormat: "text",
		DataDir:   "tern-data",
		Store:     Store{Sync: "always", SyncInterval: 100 * time.Millisecond, CacheBytes: 8 << 20},
		Listen: Listen{
			MQTT:     "127.0.0.1:1883",
			HTTP:     "127.0.0.1:8080",
			Unix:     "tern.sock",
			UnixMode: "0660",
		},
		MQTT: MQTT{
			MaxPacketSize:       1 << 20,
			ReceiveMaximum:      1024,
			TopicAliasMaximum:   64,
			MaxClientIDLength:   256,
			ConnectTimeout:      10 * time.Second,
			MaxConnectSize:      64 << 10,
			ConnectMemory:       64 << 20,
			WriteTimeout:        10 * time.Second,
			OutboundBuffer:      1 << 20,
			SlowConsumerTimeout: 30 * time.Second,
			PublishStall:        5 * time.Millisecond,
			DetachIdle:          time.Second,
			MaxQoS:              2,
			RetainAvailable:     true,
		},
		Session: Session{
			MaxInflight:      1024,
			MaxInflightBytes: 8 << 20,
			QueueLimits: QueueLimits{
				MaxQueuedMessages: 10000,
				MaxQueuedBytes:    64 << 20,
				QueueFullPolicy:   "drop_oldest",
			},
			QueueQoS0:        true,
			MaxSubscriptions: 10000,
		},
		Auth: Auth{
			URLStyle:        "json",
			URLTimeout:      5 * time.Second,
			URLCacheTTL:     time.Minute,
			BackoffFailures: 5,
			BackoffMax:      5 * time.Minute,
			// OWASP's floor for argon2id (auth.DefaultArgon2).
			PasswordHashMemoryKiB: 19456,
			PasswordHashPasses:    2,
			PasswordHashThreads:   1,
		},
		Limits: Limits{MaxThrottle: time.Second, LogInterval: time.Minute},
		Webhooks: Webhooks{Timeout: 10 * time.Second, BackoffBase: time.Second, BackoffMax: 5 * time.Minute,
			MaxAttempts: 10, MaxHooks: 1000},
		Mailbox: Mailbox{TTL: 7 * 24 * time.Hour},
		Memory:  Memory{ReleaseIdle: true, IdleAfter: 10 * time.Second, ContainerLimitRatio: 0.9},
		Cluster: Cluster{Replicas: 3},
		HTTP: HTTP{MaxBody: 1 << 20, StreamBuffer: 128, Heartbeat: 15 * time.Second, PollWait: 30 * time.Second,
			RequestTimeout: 30 * time.Second, MailboxWait: 30 * time.Second,
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second},
	}
}

// Flags maps command-line flag names to configuration keys. The serve command defines these flags.
var Flags = map[string]string{
	"mqtt":                    "listen.mqtt",
	"mqtt-tls":                "listen.mqtt_tls",
	"http":                    "listen.http",
	"https":                   "listen.https",
	"unix":                    "listen.unix",
	"mbus":                    "listen.mbus",
	"mbus-unix":               "listen.mbus_unix",
	"mbus-tls":                "listen.mbus_tls",
	"mbus-unix-tls":           "listen.mbus_unix_tls",
	"tls-cert":                "tls.cert_file",
	"tls-key":                 "tls.key_file",
	"tls-client-ca":           "tls.client_ca_file",
	"data-dir":                "data_dir",
	"sync":                    "store.sync",
	"store-accept-corruption": "store.accept_corruption",
	"log-level":               "log_level",
	"mbus-ws":                 "listen.mbus_ws",
	"mbus-wss":                "listen.mbus_wss",
	"log-format":              "log_format",
	"node-id":                 "cluster.node_id",
	"cluster-listen":          "cluster.listen",
	"cluster-advertise":       "cluster.advertise",
	"join":                    "cluster.join",
	"pprof":                   "debug.pprof",
}

// Load builds the configuration from defaults, the TOML file at path (if not empty), the
// environment, and the flags the user set.
func Load(path string, flags *pflag.FlagSet, environ func() []string) (Config, error) {
	k := koanf.New(".")
	if path != "" {
		kf := koanf.New(".")
		if err := kf.Load(file.Provider(path), toml.Parser()); err != nil {
			return Config{}, syntaxError(path, err)
		}
		if err := checkKeys(kf.Raw()); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		if err := k.Merge(kf); err != nil {
			return Config{}, err
		}
	}
	ke := koanf.New(".")
	if err := ke.Load(env.Provider(".", env.Opt{
		Prefix:        "TERN_",
		TransformFunc: envKey,
		EnvironFunc:   environ,
	}), nil); err != nil {
		return Config{}, err
	}
	if err := checkKeys(ke.Raw()); err != nil {
		return Config{}, fmt.Errorf("TERN_ environment variables: %w", err)
	}
	if err := k.Merge(ke); err != nil {
		return Config{}, err
	}
	if flags != nil {
		if err := k.Load(posflag.ProviderWithFlag(flags, ".", nil, func(f *pflag.Flag) (string, any) {
			key, ok := Flags[f.Name]
			if !ok {
				return "", nil
			}
			return key, posflag.FlagVal(flags, f)
		}), nil); err != nil {
			return Config{}, err
		}
	}
	cfg := Default()
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return Config{}, valueError(err, k.Get)
	}
	ups, err := loadUplinks(k, environ)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg.Route.Uplinks = ups
	return cfg, cfg.Validate()
}

// envKey turns TERN_SESSION__MAX_QUEUED_MESSAGES into session.max_queued_messages.
func envKey(k, v string) (string, any) {
	k = strings.ToLower(strings.TrimPrefix(k, "TERN_"))
	k = strings.ReplaceAll(k, "__", ".")
	if strings.HasPrefix(k, uplinkEnvPrefix) {
		// [[route.uplink]] is a list of tables: loadUplinks reads these by index.
		return "", nil
	}
	if strings.HasSuffix(k, "origins") || strings.HasSuffix(k, "grants") || k == "route.designated" || k == "cluster.join" {
		if v == "" {
			return k, []string{}
		}
		return k, strings.Split(v, ",")
	}
	return k, v
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen.MQTT == "" && c.Listen.MQTTTLS == "" && c.Listen.HTTP == "" && c.Listen.HTTPS == "" && c.Listen.Unix == "" &&
		c.Listen.MBus == "" && c.Listen.MBusUnix == "" && c.Listen.MBusTLS == "" && c.Listen.MBusUnixTLS == "" &&
		c.Listen.MBusWS == "" && c.Listen.MBusWSS == "" {
		errs = append(errs, errors.New("no listener configured"))
	}
	if _, err := c.Listen.SocketMode(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateTLS())
	if c.MQTT.MaxPacketSize < 64 || c.MQTT.MaxPacketSize > 268435460 {
		errs = append(errs, fmt.Errorf("mqtt.max_packet_size %d out of range 64..268435460", c.MQTT.MaxPacketSize))
	}
	if c.MQTT.ReceiveMaximum < 1 || c.MQTT.ReceiveMaximum > 65535 {
		errs = append(errs, fmt.Errorf("mqtt.receive_maximum %d out of range 1..65535", c.MQTT.ReceiveMaximum))
	}
	if c.MQTT.TopicAliasMaximum < 0 || c.MQTT.TopicAliasMaximum > 65535 {
		errs = append(errs, fmt.Errorf("mqtt.topic_alias_maximum %d out of range 0..65535", c.MQTT.TopicAliasMaximum))
	}
	if c.MQTT.MaxKeepAlive < 0 || c.MQTT.MaxKeepAlive > 65535 {
		errs = append(errs, fmt.Errorf("mqtt.max_keepalive %d out of range 0..65535", c.MQTT.MaxKeepAlive))
	}
	if c.MQTT.MaxQoS < 0 || c.MQTT.MaxQoS > 2 {
		errs = append(errs, fmt.Errorf("mqtt.max_qos %d out of range 0..2", c.MQTT.MaxQoS))
	}
	if c.MQTT.MaxConnectSize < 64 {
		errs = append(errs, fmt.Errorf("mqtt.max_connect_size %d below 64", c.MQTT.MaxConnectSize))
	}
	errs = append(errs, c.Auth.validateHashCost())
	if c.MQTT.ConnectMemory < 1<<20 {
		errs = append(errs, fmt.Errorf("mqtt.connect_memory %d below 1 MiB", c.MQTT.ConnectMemory))
	}
	if c.MQTT.DetachIdle < 0 {
		errs = append(errs, fmt.Errorf("mqtt.detach_idle %s is negative", c.MQTT.DetachIdle))
	}
	if c.MQTT.OutboundBuffer < 1024 {
		errs = append(errs, fmt.Errorf("mqtt.outbound_buffer %d below 1024", c.MQTT.OutboundBuffer))
	}
	if c.Session.MaxInflight < 1 || c.Session.MaxInflight > math.MaxUint16 {
		errs = append(errs, fmt.Errorf("session.max_inflight %d: from 1 to 65535 (MQTT packet identifiers are 16 bits)", c.Session.MaxInflight))
	}
	if len(c.Session.QueueRules) > maxQueueRules {
		errs = append(errs, fmt.Errorf("session.queue_rules: %d rules, at most %d", len(c.Session.QueueRules), maxQueueRules))
	}
	if c.Session.MaxExpiry < 0 || c.Session.MaxExpiry > 0xFFFFFFFF*time.Second {
		errs = append(errs, fmt.Errorf("session.max_expiry %s out of range", c.Session.MaxExpiry))
	}
	if c.Store.Sync != "always" && c.Store.Sync != "interval" {
		errs = append(errs, fmt.Errorf("store.sync %q: use always or interval", c.Store.Sync))
	}
	if c.Store.Sync == "interval" && c.Store.SyncInterval <= 0 {
		errs = append(errs, fmt.Errorf("store.sync_interval %s must be positive", c.Store.SyncInterval))
	}
	errs = append(errs, c.Session.QueueLimits.validate("session"))
	for i, r := range c.Session.QueueRules {
		where := fmt.Sprintf("session.queue_rules[%d]", i)
		if r.ClientID == "" {
			errs = append(errs, fmt.Errorf("%s.client_id is empty", where))
		} else if _, err := path.Match(r.ClientID, ""); err != nil {
			errs = append(errs, fmt.Errorf("%s.client_id %q: %w", where, r.ClientID, err))
		}
		errs = append(errs, r.validate(where))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format %q: want text or json", c.LogFormat))
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Auth.validate(), c.Limits.validate(), c.validateCluster(), c.Route.validate(c), c.Debug.validate(), c.Memory.validate())
	if h := c.HTTP; h.MaxBody < 1 || h.StreamBuffer < 1 || h.Heartbeat <= 0 || h.PollWait <= 0 || h.RequestTimeout <= 0 || h.MailboxWait <= 0 ||
		h.ReadHeaderTimeout <= 0 || h.ReadTimeout <= 0 {
		errs = append(errs, errors.New("http: max_body and stream_buffer must be at least 1, the durations positive"))
	}
	errs = append(errs, validateCORS(c.HTTP.CORSOrigins))
	if c.Mailbox.TTL < 0 {
		errs = append(errs, errors.New("mailbox.ttl cannot be negative"))
	}
	if w := c.Webhooks; w.Timeout <= 0 || w.BackoffBase <= 0 || w.BackoffMax < w.BackoffBase || w.MaxAttempts < 1 || w.MaxHooks < 1 {
		errs = append(errs, errors.New("webhooks: timeout and backoff_base must be positive, backoff_max at least backoff_base, max_attempts and max_hooks at least 1"))
	}
	return errors.Join(errs...)
}

// validateCORS checks http.cors_origins: "*", or scheme://host[:port] with at most one "*".
func validateCORS(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		scheme, host, ok := strings.Cut(o, "://")
		if !ok || (scheme != "http" && scheme != "https") || host == "" || strings.ContainsAny(host, "/?#") ||
			strings.Count(o, "*") > 1 {
			return fmt.Errorf("http.cors_origins %q: want \"*\" or an origin such as https://app.example.com (one * allowed)", o)
		}
	}
	return nil
}

func (a Auth) validate() error {
	var errs []error
	for key, gs := range map[string][]string{"anonymous_grants": a.AnonymousGrants,
		"default_grants": a.DefaultGrants, "url_bearer_grants": a.URLBearerGrants} {
		if _, err := ParseGrants(gs); err != nil {
			errs = append(errs, fmt.Errorf("auth.%s: %w", key, err))
		}
	}
	if a.URLStyle != "json" && a.URLStyle != "bearer" {
		errs = append(errs, fmt.Errorf("auth.url_style %q: use json or bearer", a.URLStyle))
	}
	if a.URL != "" && !strings.HasPrefix(a.URL, "http://") && !strings.HasPrefix(a.URL, "https://") {
		errs = append(errs, fmt.Errorf("auth.url %q: not an http or https URL", a.URL))
	}
	if a.URLTimeout < 0 || a.BackoffMax < 0 {
		errs = append(errs, errors.New("auth: durations cannot be negative"))
	}
	return errors.Join(errs...)
}

func (l Limits) validate() error {
	if l.MaxConnections < 0 || l.MaxConnectionsPerIdentity < 0 || l.PublishRate < 0 || l.PublishBurst < 0 ||
		l.PublishBytesRate < 0 || l.MaxThrottle < 0 || l.MaxPayload < 0 || l.LogInterval < 0 {
		return errors.New("limits cannot be negative")
	}
	return nil
}

// ParseGrants reads grants written "action:filter", e.g. "publish:sensors/%u/#", or
// "deny:action:filter" (see auth.ParseGrant).
func ParseGrants(ss []string) ([]auth.Grant, error) {
	out := make([]auth.Grant, 0, len(ss))
	for _, s := range ss {
		g, err := auth.ParseGrant(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

func (c *Config) validateTLS() error {
	var errs []error
	for name := range c.TLS.Listeners {
		if !slices.Contains(TLSListeners, name) {
			errs = append(errs, fmt.Errorf("tls.listeners.%s: no such TLS listener (use %s)", name, strings.Join(TLSListeners, ", ")))
		}
	}
	for name, addr := range map[string]string{"mqtt_tls": c.Listen.MQTTTLS, "https": c.Listen.HTTPS, "mbus_tls": c.Listen.MBusTLS,
		"mbus_unix_tls": c.Listen.MBusUnixTLS, "mbus_wss": c.Listen.MBusWSS} {
		if addr == "" {
			continue
		}
		t := c.TLS.ForListener(name)
		if t.CertFile == "" || t.KeyFile == "" {
			errs = append(errs, fmt.Errorf("listener %s needs tls.cert_file and tls.key_file (--tls-cert, --tls-key)", name))
		}
		if t.RequireClientCert && t.ClientCAFile == "" {
			errs = append(errs, fmt.Errorf("listener %s: require_client_cert needs client_ca_file", name))
		}
	}
	return errors.Join(errs...)
}

func (q QueueLimits) validate(where string) error {
	var errs []error
	if q.MaxQueuedMessages < 0 || q.MaxQueuedBytes < 0 || q.MaxQueueAge < 0 {
		errs = append(errs, fmt.Errorf("%s: queue limits cannot be negative", where))
	}
	switch q.QueueFullPolicy {
	case "", "drop_oldest", "refuse":
	default:
		errs = append(errs, fmt.Errorf("%s.queue_full_policy %q: use drop_oldest or refuse", where, q.QueueFullPolicy))
	}
	return errors.Join(errs...)
}

// ParseLevel reads a log level name.
// NewLogger returns the logger the configuration asks for, writing to w.
func (c Config) NewLogger(w io.Writer) *slog.Logger {
	level, _ := ParseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log_level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// Environ is os.Environ, named for callers that pass it to Load.
func Environ() []string { return os.Environ() }

// validateHashCost bounds the argon2id cost: at least 8 KiB per lane (argon2's own minimum), at
// most 1 GiB and 64 passes (the bounds a stored hash is read back with).
func (a Auth) validateHashCost() error {
	var errs []error
	if a.PasswordHashThreads < 1 || a.PasswordHashThreads > 255 {
		errs = append(errs, fmt.Errorf("auth.password_hash_threads %d out of range 1..255", a.PasswordHashThreads))
	}
	if m := a.PasswordHashMemoryKiB; m < 8*max(a.PasswordHashThreads, 1) || m > 1<<20 {
		errs = append(errs, fmt.Errorf("auth.password_hash_memory_kib %d out of range 8 per thread..1048576", m))
	}
	if a.PasswordHashPasses < 1 || a.PasswordHashPasses > 64 {
		errs = append(errs, fmt.Errorf("auth.password_hash_passes %d out of range 1..64", a.PasswordHashPasses))
	}
	if a.MaxConcurrentHashes < 0 {
		errs = append(errs, fmt.Errorf("auth.max_concurrent_hashes %d is negative", a.MaxConcurrentHashes))
	}
	return errors.Join(errs...)
}
