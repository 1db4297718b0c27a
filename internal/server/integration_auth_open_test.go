package server_test

// Open mode (nothing configured) beyond TestOpenModeOnlyOnLoopback: a refused start leaves nothing
// bound or locked, auth.allow_open starts on every interface, and the first user ends open mode.

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
)

// freeAddr returns host:port with a port that was free a moment ago.
func freeAddr(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestOpenModeRefusedStartLeavesNothingBehind: an unconfigured tern asked to listen on 0.0.0.0
// refuses to start, naming the exposed address (and not the loopback one), and leaves no
// listener, socket file or store lock behind: the same configuration on loopback then starts.
func TestOpenModeRefusedStartLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(dir, "data")
	exposed, local := freeAddr(t, "0.0.0.0"), freeAddr(t, "127.0.0.1")
	sock := filepath.Join(dir, "tern.sock")
	cfg.Listen = config.Listen{MQTT: exposed, HTTP: local, Unix: sock}
	srv, err := server.Start(cfg, nil)
	if err == nil {
		_ = srv.Close()
		t.Fatalf("an unconfigured tern started on %s", exposed)
	}
	if msg := err.Error(); !strings.Contains(msg, exposed) || strings.Contains(msg, local) || !strings.Contains(msg, "allow_open") {
		t.Fatalf("error %q should name %s (not the loopback %s) and auth.allow_open", msg, exposed, local)
	}
	for _, addr := range []string{exposed, local} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is still bound after the refused start: %v", addr, err)
		}
		_ = ln.Close()
	}
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unix socket after the refused start: %v", err)
	}
	// The data directory is not left locked.
	cfg.Listen.MQTT = "127.0.0.1:0"
	srv, err = server.Start(cfg, nil)
	if err != nil {
		t.Fatalf("starting on loopback after the refusal: %v", err)
	}
	_ = srv.Close()
}

// TestAllowOpenStartsEverywhere: with auth.allow_open an unconfigured tern listens on 0.0.0.0,
// admits anybody to everything, and its port is free again after Close.
func TestAllowOpenStartsEverywhere(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = ""
	cfg.Listen = config.Listen{MQTT: "0.0.0.0:0"}
	cfg.Auth.AllowOpen = true
	srv, err := server.Start(cfg, nil)
	if err != nil {
		t.Fatalf("allow_open: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = srv.Close()
		}
	}()
	if !srv.Auth.Open() {
		t.Fatal("not open")
	}
	_, port, _ := net.SplitHostPort(srv.Addr("mqtt"))
	local := net.JoinHostPort("127.0.0.1", port)
	v := connectV5(t, dialTCP(t, local), &paho.Connect{ClientID: "anyone", CleanStart: true})
	v.sub("$SYS/open", 1)
	v.publish(&paho.Publish{Topic: "$SYS/open", QoS: 1, Retain: true, Payload: []byte("p")})
	v.expect("$SYS/open", "p")
	v.disconnect(0, nil)
	_ = srv.Close()
	closed = true
	if c, err := net.DialTimeout("tcp", local, waitTimeout); err == nil {
		_ = c.Close()
		t.Fatalf("%s still accepts connections after Close", local)
	}
}

// TestFirstUserEndsOpenMode: an open tern admits clients with and without credentials, and
// creating the first user at runtime ends that for the next connects.
func TestFirstUserEndsOpenMode(t *testing.T) {
	srv := startServer(t)
	if !srv.Auth.Open() {
		t.Fatal("an unconfigured tern is not open")
	}
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		if got := rawConnack(t, srv, v, uniqueID("anon"), "", "", nil); got != packet.Success {
			t.Fatalf("open, %v, no credentials: %v", v, got)
		}
		if got := rawConnack(t, srv, v, uniqueID("anyname"), "whoever", "whatever", nil); got != packet.Success {
			t.Fatalf("open, %v, unchecked credentials: %v", v, got)
		}
	}
	must(t, srv.Auth.PutUser(auth.User{Name: "alice", Grants: grants(t, "publish:users/%u/#")}, []byte("alicepw")))
	if srv.Auth.Open() {
		t.Fatal("still open after the first user")
	}
	for _, c := range []struct {
		name, user, pw string
		v5, v3         packet.ReasonCode
	}{
		{"no credentials", "", "", packet.NotAuthorized, packet.V3RefusedNotAuthorized},
		{"unknown user", "whoever", "whatever", packet.BadUsernameOrPassword, packet.V3RefusedBadUsernameOrPassword},
		{"the new user", "alice", "alicepw", packet.Success, packet.Success},
	} {
		if got := rawConnack(t, srv, packet.V5, uniqueID("c5"), c.user, c.pw, nil); got != c.v5 {
			t.Errorf("%s, MQTT 5: %v, want %v", c.name, got, c.v5)
		}
		if got := rawConnack(t, srv, packet.V311, uniqueID("c3"), c.user, c.pw, nil); got != c.v3 {
			t.Errorf("%s, 3.1.1: %d, want %d", c.name, got, c.v3)
		}
	}
	// Deleting the only user does not open the broker again.
	must(t, srv.Auth.DeleteUser("alice"))
	if got := rawConnack(t, srv, packet.V5, uniqueID("c5"), "", "", nil); got != packet.NotAuthorized {
		t.Fatalf("after deleting the last user, no credentials: %v", got)
	}
}
