// Package servertest starts a whole tern inside a test process, on loopback ports chosen by the
// kernel, for tests that drive it through real clients.
package servertest

import (
	"path/filepath"
	"testing"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server"
)

// Start runs tern with MQTT over TCP, HTTP (WebSocket) and a Unix socket in t.TempDir(), after
// applying opts to the configuration, and stops it when the test ends. Listener addresses are in
// srv.Addr("mqtt"), srv.Addr("http") and srv.Addr("unix").
func Start(t testing.TB, opts ...func(*config.Config)) *server.Server {
	t.Helper()
	return StartWith(t, nil, opts...)
}

// StartWith is Start with options of server.Start (a fake clock, say).
func StartWith(t testing.TB, sopts []server.Option, opts ...func(*config.Config)) *server.Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = "" // memory only unless a test asks for a data directory
	cfg.Listen = config.Listen{
		MQTT: "127.0.0.1:0",
		HTTP: "127.0.0.1:0",
		Unix: filepath.Join(t.TempDir(), "tern.sock"),
	}
	// A password check at the default cost takes about a second of CPU under the race detector;
	// tests that store passwords do not need a hash that resists cracking.
	cfg.Auth.PasswordHashMemoryKiB, cfg.Auth.PasswordHashPasses = 64, 1
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.Start(cfg, nil, sopts...)
	if err != nil {
		t.Fatalf("starting tern: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}
