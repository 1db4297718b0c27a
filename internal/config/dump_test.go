package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// What Dump prints loads back as the same configuration: it is a complete, valid file.
func TestDumpLoadsBack(t *testing.T) {
	c := Default()
	c.Session.QueueRules = []QueueRule{{ClientID: "s-*", QueueLimits: QueueLimits{MaxQueuedMessages: 3, QueueFullPolicy: "refuse"}}}
	c.TLS.Listeners = map[string]TLSOverride{"https": {IdentitySAN: "uri"}}
	c.Session.MaxExpiry = 90 * time.Minute
	b, err := Dump(c)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "dump.toml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := Load(p, nil, noEnv)
	if err != nil {
		t.Fatalf("the dump does not load: %v\n%s", err, b)
	}
	// Compared through their dumps: an empty list and no list are the same setting.
	again, err := Dump(back)
	if err != nil || string(again) != string(b) {
		t.Fatalf("loaded back differently:\n%s\nwant\n%s", again, b)
	}
	if back.Session.MaxExpiry != 90*time.Minute || back.Session.QueueRules[0].QueueFullPolicy != "refuse" ||
		back.TLS.Listeners["https"].IdentitySAN != "uri" {
		t.Fatalf("loaded back %+v", back.Session)
	}
}
