package server_test

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server"
)

// TestFailedStartKeepsOthersSocket: a second tern configured with the same Unix socket path that
// fails to start (here its MQTT port is taken) leaves the running tern's socket file in place,
// and the running tern still accepts connections on it.
func TestFailedStartKeepsOthersSocket(t *testing.T) {
	a := startServer(t)
	path := a.Addr("unix")
	for _, conflict := range []struct {
		name string
		mod  func(*config.Listen)
	}{
		// Fails before reaching the Unix listener.
		{"mqtt port taken", func(l *config.Listen) { l.MQTT = a.Addr("mqtt") }},
		// Fails at the Unix listener itself: the socket is in use.
		{"socket in use", func(l *config.Listen) { l.MQTT = "127.0.0.1:0" }},
	} {
		t.Run(conflict.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = ""
			cfg.Listen = config.Listen{Unix: path}
			conflict.mod(&cfg.Listen)
			b, err := server.Start(cfg, nil)
			if err == nil {
				_ = b.Close()
				t.Fatal("a second tern started on a taken port and socket")
			}
			t.Logf("the second tern failed to start, as it should: %v", err)
			fi, err := os.Lstat(path)
			if err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("the running tern's socket %s is gone after another failed to start: %v", path, err)
			}
			conn, err := net.DialTimeout("unix", path, waitTimeout)
			if err != nil {
				t.Fatalf("dial the running tern's socket: %v", err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			c := connectV5(t, conn, &paho.Connect{ClientID: uniqueID("unix-after"), CleanStart: true})
			c.sub("keep/t", 0)
			c.pub("keep/t", 0, "still here")
			c.expect("keep/t", "still here")
		})
	}
	// The tern that bound the socket removes it when it stops.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket %s left behind by the tern that bound it: %v", path, err)
	}
}
