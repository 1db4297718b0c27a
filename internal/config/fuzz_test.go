package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: whatever a configuration file and the TERN_ environment hold, Load returns a
// configuration that passes Validate or an error; never a panic.
func FuzzLoad(f *testing.F) {
	f.Add("log_level = \"debug\"\n[mqtt]\nmax_packet_size = 4096\n", "TERN_SESSION__MAX_QUEUED_MESSAGES=5")
	f.Add("[listen]\nmqtt = \"127.0.0.1:1883\"\n[[session.queue_rules]]\nclient_id = \"a*\"\nmax_queued_messages = 1\n", "")
	f.Add("[tls]\ncert_file = \"x\"\n[tls.listeners.https]\nrequire_client_cert = true\n", "TERN_MQTT__WEBSOCKET_ORIGINS=a,b")
	f.Add("mqtt = 1\n[mqtt\n", "TERN_STORE__SYNC=sometimes")
	f.Add("[auth]\ndefault_grants = [\"publish:#\", \"bogus\"]\n", "TERN_LIMITS__PUBLISH_RATE=-1")
	f.Add(siteConfig, "TERN_ROUTE__UPLINK__2__NAME=x\nTERN_ROUTE__UPLINK__0__INFLIGHT=zero")
	f.Add("[route]\nuplink = 3\n", "TERN_ROUTE__UPLINK__0__NAMESPACES=a,b")
	f.Add("[[route.uplink]]\nname = [1]\n", "TERN_ROUTE__DESIGNATED=")
	f.Fuzz(func(t *testing.T, file, env string) {
		path := filepath.Join(t.TempDir(), "tern.toml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		var environ []string
		for _, line := range strings.Split(env, "\n") {
			if strings.HasPrefix(line, "TERN_") && strings.Contains(line, "=") {
				environ = append(environ, line)
			}
		}
		cfg, err := Load(path, nil, func() []string { return environ })
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load accepted a configuration that does not validate: %v", err)
		}
	})
}
