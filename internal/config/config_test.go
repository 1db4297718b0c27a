package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func flagSet(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	d := Default()
	fs.String("mqtt", d.Listen.MQTT, "")
	fs.String("http", d.Listen.HTTP, "")
	fs.String("unix", d.Listen.Unix, "")
	fs.String("data-dir", d.DataDir, "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func noEnv() []string { return nil }

func TestDefaultsAreLoopbackAndValid(t *testing.T) {
	cfg, err := Load("", flagSet(t), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{cfg.Listen.MQTT, cfg.Listen.HTTP} {
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("default listener %q is not loopback", addr)
		}
	}
	if cfg.MQTT.MaxQoS != 2 || !cfg.MQTT.RetainAvailable || cfg.Session.MaxQueuedMessages != 10000 {
		t.Errorf("defaults lost: %+v", cfg)
	}
}

func TestPrecedenceFileEnvFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tern.toml")
	err := os.WriteFile(path, []byte(`
log_level = "debug"
[listen]
mqtt = "127.0.0.1:2000"
http = "127.0.0.1:2001"
[mqtt]
write_timeout = "3s"
websocket_origins = ["example.com"]
[session]
max_queued_messages = 7
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	env := func() []string {
		return []string{"TERN_LISTEN__HTTP=127.0.0.1:3001", "TERN_SESSION__QUEUE_QOS0=false", "OTHER=1"}
	}
	cfg, err := Load(path, flagSet(t, "--unix", ""), env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.MQTT != "127.0.0.1:2000" {
		t.Errorf("file value lost: mqtt=%q", cfg.Listen.MQTT)
	}
	if cfg.Listen.HTTP != "127.0.0.1:3001" {
		t.Errorf("env did not override file: http=%q", cfg.Listen.HTTP)
	}
	if cfg.Listen.Unix != "" {
		t.Errorf("explicit empty flag did not disable unix: %q", cfg.Listen.Unix)
	}
	if cfg.MQTT.WriteTimeout != 3*time.Second || cfg.Session.MaxQueuedMessages != 7 || cfg.Session.QueueQoS0 {
		t.Errorf("typed values wrong: %+v %+v", cfg.MQTT, cfg.Session)
	}
	if len(cfg.MQTT.WebSocketOrigins) != 1 || cfg.LogLevel != "debug" {
		t.Errorf("list or string wrong: %+v", cfg)
	}
	// Defaults the file did not mention survive.
	if cfg.MQTT.MaxPacketSize != Default().MQTT.MaxPacketSize {
		t.Errorf("default overwritten: %d", cfg.MQTT.MaxPacketSize)
	}
}

func TestFlagOverridesEnv(t *testing.T) {
	env := func() []string { return []string{"TERN_LISTEN__MQTT=127.0.0.1:4000"} }
	cfg, err := Load("", flagSet(t, "--mqtt", "127.0.0.1:5000"), env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.MQTT != "127.0.0.1:5000" {
		t.Fatalf("flag did not win: %q", cfg.Listen.MQTT)
	}
}

func TestValidationErrors(t *testing.T) {
	cases := map[string][]string{
		"needs tls.cert_file":            {"TERN_LISTEN__MQTT_TLS=127.0.0.1:8883"},
		"max_packet_size":                {"TERN_MQTT__MAX_PACKET_SIZE=10"},
		"receive_maximum":                {"TERN_MQTT__RECEIVE_MAXIMUM=0"},
		"max_qos":                        {"TERN_MQTT__MAX_QOS=3"},
		"no listener":                    {"TERN_LISTEN__MQTT=", "TERN_LISTEN__HTTP=", "TERN_LISTEN__UNIX="},
		"log_level":                      {"TERN_LOG_LEVEL=loud"},
		"session.max_inflight":           {"TERN_SESSION__MAX_INFLIGHT=0"},
		"packet identifiers are 16 bits": {"TERN_SESSION__MAX_INFLIGHT=65536"},
		"store.sync":                     {"TERN_STORE__SYNC=sometimes"},
		"queue_full_policy":              {"TERN_SESSION__QUEUE_FULL_POLICY=shrug"},
		"durations positive":             {"TERN_HTTP__READ_TIMEOUT=0s"},
		"auth.password_hash_memory_kib":  {"TERN_AUTH__PASSWORD_HASH_MEMORY_KIB=4"},
		"auth.password_hash_passes":      {"TERN_AUTH__PASSWORD_HASH_PASSES=0"},
		"auth.password_hash_threads":     {"TERN_AUTH__PASSWORD_HASH_THREADS=256"},
		"auth.max_concurrent_hashes":     {"TERN_AUTH__MAX_CONCURRENT_HASHES=-1"},
		"memory.limit":                   {"TERN_MEMORY__LIMIT=-5"},
		"memory.idle_after":              {"TERN_MEMORY__IDLE_AFTER=10ms"},
		"memory.container_limit_ratio":   {"TERN_MEMORY__CONTAINER_LIMIT_RATIO=1.5"},
	}
	for want, vars := range cases {
		_, err := Load("", nil, func() []string { return vars })
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want error mentioning %q", vars, err, want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml"), nil, noEnv); err == nil {
		t.Error("missing config file accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	_ = os.WriteFile(bad, []byte("[listen\nmqtt="), 0o600)
	if _, err := Load(bad, nil, noEnv); err == nil || !strings.Contains(err.Error(), "bad.toml") {
		t.Errorf("malformed file: %v", err)
	}
}

// Every connect tries the queue rules in order: a configuration with thousands is refused
// rather than slowing every connect.
func TestQueueRulesBounded(t *testing.T) {
	var b strings.Builder
	for i := range maxQueueRules + 1 {
		fmt.Fprintf(&b, "[[session.queue_rules]]\nclient_id = \"meter-%d-*\"\nmax_queued_messages = 10\n", i)
	}
	path := filepath.Join(t.TempDir(), "tern.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, nil, noEnv); err == nil || !strings.Contains(err.Error(), "session.queue_rules: 4097 rules") {
		t.Fatalf("%d queue rules: %v", maxQueueRules+1, err)
	}
}

func TestDurableStoreAndQueueRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tern.toml")
	err := os.WriteFile(path, []byte(`
data_dir = "/var/lib/tern"
[store]
sync = "interval"
sync_interval = "250ms"
[session]
max_queue_age = "1h"
queue_full_policy = "refuse"
[[session.queue_rules]]
client_id = "meter-*"
max_queued_messages = 1000000
max_queue_age = "168h"
[[session.queue_rules]]
client_id = "[bad"
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, nil, noEnv)
	if err == nil || !strings.Contains(err.Error(), "queue_rules[1].client_id") {
		t.Fatalf("bad pattern: got %v", err)
	}
	_ = os.WriteFile(path, []byte(strings.Replace(mustRead(t, path), `client_id = "[bad"`, `client_id = "x"`, 1)), 0o600)
	cfg, err := Load(path, nil, func() []string { return []string{"TERN_SESSION__MAX_QUEUED_BYTES=5"} })
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Session
	if cfg.DataDir != "/var/lib/tern" || cfg.Store.Sync != "interval" || cfg.Store.SyncInterval != 250*time.Millisecond {
		t.Errorf("store settings: %+v %q", cfg.Store, cfg.DataDir)
	}
	if s.MaxQueueAge != time.Hour || s.QueueFullPolicy != "refuse" || s.MaxQueuedBytes != 5 || s.MaxQueuedMessages != 10000 {
		t.Errorf("session limits: %+v", s.QueueLimits)
	}
	if len(s.QueueRules) != 2 || s.QueueRules[0].ClientID != "meter-*" || s.QueueRules[0].MaxQueuedMessages != 1000000 ||
		s.QueueRules[0].MaxQueueAge != 168*time.Hour {
		t.Errorf("queue rules: %+v", s.QueueRules)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTLSPerListenerAndAuthSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tern.toml")
	err := os.WriteFile(path, []byte(`
[listen]
mqtt_tls = "127.0.0.1:8883"
https = "127.0.0.1:8443"
[tls]
cert_file = "server.crt"
key_file = "server.key"
client_ca_file = "devices-ca.crt"
require_client_cert = true
[tls.listeners.https]
client_ca_file = "people-ca.crt"
require_client_cert = false
[auth]
default_grants = ["publish:users/%u/#", "subscribe:users/%u/#"]
[limits]
publish_rate = 100.5
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, nil, func() []string { return []string{"TERN_AUTH__ANONYMOUS_GRANTS=subscribe:public/#,subscribe:news/#"} })
	if err != nil {
		t.Fatal(err)
	}
	m, h := cfg.TLS.ForListener("mqtt_tls"), cfg.TLS.ForListener("https")
	if m.ClientCAFile != "devices-ca.crt" || !m.RequireClientCert || m.CertFile != "server.crt" {
		t.Fatalf("mqtt_tls: %+v", m)
	}
	if h.ClientCAFile != "people-ca.crt" || h.RequireClientCert || h.KeyFile != "server.key" {
		t.Fatalf("https: %+v", h)
	}
	if len(cfg.Auth.DefaultGrants) != 2 || len(cfg.Auth.AnonymousGrants) != 2 || cfg.Limits.PublishRate != 100.5 {
		t.Fatalf("auth %+v limits %+v", cfg.Auth, cfg.Limits)
	}

	for bad, want := range map[string]string{
		"[tls.listeners.mqtt]\nclient_ca_file = \"x\"": "no such TLS listener",
		"[auth]\ndefault_grants = [\"frobnicate:a\"]":  "auth.default_grants",
		"[auth]\nurl = \"ftp://x\"":                    "not an http or https URL",
		"[limits]\nmax_connections = -1":               "cannot be negative",
		"[listen]\nhttps = \"127.0.0.1:0\"\n[tls.listeners.https]\nrequire_client_cert = true\ncert_file = \"a\"\nkey_file = \"b\"": "require_client_cert needs client_ca_file",
	} {
		p := filepath.Join(t.TempDir(), "bad.toml")
		_ = os.WriteFile(p, []byte(bad), 0o600)
		if _, err := Load(p, nil, noEnv); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", bad, err, want)
		}
	}
}

// Every listener that is not a Unix socket is in Listen.Network, which decides whether an open
// tern is exposed beyond loopback.
func TestListenNetworkCoversEveryListener(t *testing.T) {
	var l Listen
	v := reflect.ValueOf(&l).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "unix_mode" {
			continue // not a listener
		}
		v.Field(i).SetString("marker:" + tag)
		isUnix := tag == "unix" || strings.HasPrefix(tag, "mbus_unix")
		if got := slices.Contains(l.Network(), "marker:"+tag); got == isUnix {
			t.Errorf("listener %s: in Network() = %v, but it is %s", tag, got, map[bool]string{true: "a Unix socket", false: "a network address"}[isUnix])
		}
	}
}

func TestHTTPKeys(t *testing.T) {
	cfg, err := Load("", nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.ReadHeaderTimeout != 10*time.Second || cfg.HTTP.ReadTimeout != 30*time.Second {
		t.Errorf("defaults: read_header_timeout %s, read_timeout %s", cfg.HTTP.ReadHeaderTimeout, cfg.HTTP.ReadTimeout)
	}
	cfg, err = Load("", nil, func() []string {
		return []string{"TERN_HTTP__READ_HEADER_TIMEOUT=2s", "TERN_HTTP__READ_TIMEOUT=1m",
			"TERN_HTTP__WEBSOCKET_ORIGINS=app.example.com,*.corp.example"}
	})
	if err != nil || cfg.HTTP.ReadHeaderTimeout != 2*time.Second || cfg.HTTP.ReadTimeout != time.Minute {
		t.Errorf("from the environment: %s %s, %v", cfg.HTTP.ReadHeaderTimeout, cfg.HTTP.ReadTimeout, err)
	}
	if o := cfg.HTTP.WebSocketOrigins; len(o) != 2 || o[1] != "*.corp.example" {
		t.Errorf("http.websocket_origins from the environment: %q", o)
	}
}

func TestClusterConfig(t *testing.T) {
	env := func(kv ...string) func() []string { return func() []string { return kv } }
	cfg, err := Load("", nil, env("TERN_CLUSTER__NODE_ID=n1", "TERN_CLUSTER__LISTEN=127.0.0.1:7001",
		"TERN_CLUSTER__JOIN=127.0.0.1:7002,127.0.0.1:7003"))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Cluster; c.NodeID != "n1" || c.Listen != "127.0.0.1:7001" || len(c.Join) != 2 || c.Join[1] != "127.0.0.1:7003" || c.Replicas != 3 {
		t.Fatalf("cluster config %+v", c)
	}
	if !cfg.Cluster.Enabled() || Default().Cluster.Enabled() {
		t.Fatal("Enabled wrong")
	}
	for _, bad := range [][]string{
		{"TERN_CLUSTER__LISTEN=127.0.0.1:7001"},                             // no node id
		{"TERN_CLUSTER__NODE_ID=N1", "TERN_CLUSTER__LISTEN=127.0.0.1:7001"}, // upper case
		{"TERN_CLUSTER__NODE_ID=n1"},                                        // no listener
		{"TERN_CLUSTER__NODE_ID=n1", "TERN_CLUSTER__LISTEN=0.0.0.0:7001"},   // unreachable
		{"TERN_CLUSTER__NODE_ID=n1", "TERN_CLUSTER__LISTEN=10.1.2.3:7001"},  // no mutual TLS
		{"TERN_CLUSTER__NODE_ID=n1", "TERN_CLUSTER__LISTEN=127.0.0.1:7001", "TERN_CLUSTER__REPLICAS=0"},
		{"TERN_CLUSTER__NODE_ID=n1", "TERN_CLUSTER__LISTEN=127.0.0.1:7001", "TERN_CLUSTER__JOIN=nohost"},
		{"TERN_CLUSTER__NODE_ID=n1", "TERN_CLUSTER__LISTEN=127.0.0.1:7001", "TERN_DATA_DIR="},
	} {
		if _, err := Load("", nil, env(bad...)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := Load("", nil, env("TERN_CLUSTER__NODE_ID=n1", "TERN_CLUSTER__LISTEN=10.1.2.3:7001",
		"TERN_TLS__CERT_FILE=n.crt", "TERN_TLS__KEY_FILE=n.key", "TERN_TLS__CLIENT_CA_FILE=ca.crt")); err != nil {
		t.Errorf("mutual TLS beyond loopback refused: %v", err)
	}
}

func TestCORSAndMetricsKeys(t *testing.T) {
	cfg, err := Load("", nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.HTTP.CORSOrigins) != 0 || cfg.Metrics.RequireAuth {
		t.Errorf("defaults: cors_origins %q, metrics.require_auth %v (want off)", cfg.HTTP.CORSOrigins, cfg.Metrics.RequireAuth)
	}
	cfg, err = Load("", nil, func() []string {
		return []string{"TERN_HTTP__CORS_ORIGINS=https://app.example.com,https://*.corp.example", "TERN_METRICS__REQUIRE_AUTH=true"}
	})
	if err != nil || len(cfg.HTTP.CORSOrigins) != 2 || !cfg.Metrics.RequireAuth {
		t.Errorf("from the environment: %q %v, %v", cfg.HTTP.CORSOrigins, cfg.Metrics.RequireAuth, err)
	}
	for _, bad := range []string{"app.example.com", "ftp://x", "https://", "https://*.*.example", "https://a/b"} {
		if _, err := Load("", nil, func() []string { return []string{"TERN_HTTP__CORS_ORIGINS=" + bad} }); err == nil ||
			!strings.Contains(err.Error(), "cors_origins") {
			t.Errorf("cors origin %q: %v", bad, err)
		}
	}
}
