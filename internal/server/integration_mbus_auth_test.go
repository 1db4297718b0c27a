package server_test

import (
	"testing"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mbus"
	"github.com/ternmq/tern/internal/mbus/mbustest"
)

// TestMBusCreateAndCloseWithAuth: with users configured, command.create checks the password (the
// identifier is the user name) and a wrong one is refused and closed; command.close needs the
// admin grant on mbus/clients, so a plain daemon cannot close another client and an operator can.
func TestMBusCreateAndCloseWithAuth(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) { c.Listen.MBus = "127.0.0.1:0" })
	for _, u := range []struct {
		name, pw string
		grants   []string
	}{
		{"daemon", "daemonpw", []string{"serve:daemon/#", "publish:mbus/daemon/#"}},
		{"ops", "opspw", []string{"admin:mbus/clients"}},
	} {
		if err := srv.Auth.PutUser(auth.User{Name: u.name, Grants: grants(t, u.grants...)}, []byte(u.pw)); err != nil {
			t.Fatal(err)
		}
	}
	addr := srv.Addr("mbus")

	bad := mbustest.Dial(t, "tcp", addr)
	if r := bad.Create(map[string]any{"identifier": "daemon", "password": "wrong"}); *r.Status != -1 {
		t.Fatalf("create with a wrong password: status %d", *r.Status)
	}
	bad.StartReader()
	if !bad.Closed() {
		t.Fatal("a refused create left the connection open")
	}
	anon := mbustest.Dial(t, "tcp", addr)
	if r := anon.Create(map[string]any{}); *r.Status != -1 {
		t.Fatalf("create without credentials: status %d", *r.Status)
	}

	daemon := mbustest.Dial(t, "tcp", addr)
	if r := daemon.Create(map[string]any{"identifier": "daemon", "password": "daemonpw"}); *r.Status != 0 {
		t.Fatalf("daemon create: %s", r.Payload)
	}
	ops := mbustest.Dial(t, "tcp", addr)
	if r := ops.Create(map[string]any{"identifier": "ops", "password": "opspw"}); *r.Status != 0 {
		t.Fatalf("ops create: %s", r.Payload)
	}
	seq := daemon.Command(mbus.ServerID, "command.close", map[string]string{"source": "ops"})
	if st, _ := daemon.ResultOf(seq); st != -1 {
		t.Fatalf("a daemon without admin closed a client: status %d", st)
	}
	seq = ops.Command(mbus.ServerID, "command.clients", map[string]any{})
	if st, _ := ops.ResultOf(seq); st != 0 {
		t.Fatal("ops was affected by the refused close")
	}
	seq = ops.Command(mbus.ServerID, "command.close", map[string]string{"source": "daemon"})
	if st, _ := ops.ResultOf(seq); st != 0 {
		t.Fatalf("an admin's close: status %d", st)
	}
	if !daemon.Closed() {
		t.Fatal("the closed client is still connected")
	}
	seq = ops.Command(mbus.ServerID, "command.close", map[string]string{"source": mbus.ServerID})
	if st, _ := ops.ResultOf(seq); st != -1 {
		t.Fatalf("closing the server: status %d, want -1 (nothing stops the broker this way)", st)
	}
}
