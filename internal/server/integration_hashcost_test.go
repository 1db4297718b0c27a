package server_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
)

// The [auth] password_hash_* keys set the cost of the hashes tern stores, and a client signs in
// against such a hash.
func TestConfiguredPasswordHashCost(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.Auth.PasswordHashMemoryKiB, c.Auth.PasswordHashPasses, c.Auth.PasswordHashThreads = 64, 1, 1
	})
	if err := srv.Auth.PutUser(auth.User{Name: "alice"}, []byte("alicepw")); err != nil {
		t.Fatal(err)
	}
	raw, ok, err := srv.Store.Records().Get("users", "alice")
	if err != nil || !ok {
		t.Fatalf("alice's record: %v %v", ok, err)
	}
	var rec struct{ Hash string }
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rec.Hash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("stored hash %q, want the configured cost m=64,t=1,p=1", rec.Hash)
	}
	// connectV5 fails the test unless the CONNACK is a success.
	connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "alice-1", CleanStart: true,
		Username: "alice", UsernameFlag: true, Password: []byte("alicepw"), PasswordFlag: true})
}
