package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadText(t *testing.T, text string, env ...string) error {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tern.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, nil, func() []string { return env })
	return err
}

// A misspelled or misplaced key refuses to start and names the closest known key; it used to be
// ignored and its default used.
func TestUnknownKeysAreErrors(t *testing.T) {
	for _, c := range []struct {
		name, text string
		env        []string
		want       []string
	}{
		{"typo", "[session]\nmax_queued_mesages = 5\n", nil, []string{"session.max_queued_mesages", "did you mean session.max_queued_messages"}},
		{"wrong section", "[mqtt]\nmax_queued_messages = 5\n", nil, []string{"mqtt.max_queued_messages", "a key of [session]"}},
		{"unknown section", "[sesion]\nmax_expiry = \"1h\"\n", nil, []string{"sesion", "did you mean session"}},
		{"top level", "log_levle = \"debug\"\n", nil, []string{"log_levle", "did you mean log_level"}},
		{"in a listener override", "[tls.listeners.https]\ncert_fille = \"x\"\n", nil, []string{"tls.listeners.https.cert_fille", "cert_file"}},
		{"in a queue rule", "[[session.queue_rules]]\nclient_id = \"a*\"\nmax_queued = 3\n", nil, []string{"session.queue_rules[0].max_queued"}},
		{"environment", "", []string{"TERN_SESSION__MAX_QUEUED_MESAGES=5"}, []string{"TERN_ environment", "session.max_queued_mesages"}},
	} {
		err := loadText(t, c.text, c.env...)
		if !errors.Is(err, ErrUnknownKey) {
			t.Errorf("%s: %v, want an unknown key", c.name, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
	}
	if err := loadText(t, "[session]\nmax_queued_messages = 5\n[[session.queue_rules]]\nclient_id = \"a*\"\nmax_queued_messages = 1\n[tls.listeners.https]\nidentity_san = \"uri\"\n"); err != nil {
		t.Fatalf("known keys: %v", err)
	}
}

// A TOML syntax error says where.
func TestSyntaxErrorsGiveLineAndColumn(t *testing.T) {
	err := loadText(t, "log_level = \"info\"\n[session\nmax_expiry = \"1h\"\n")
	if err == nil || !strings.Contains(err.Error(), "line 2, column 9") {
		t.Fatalf("%v, want line 2, column 9", err)
	}
}

// A bad value is echoed in the error.
func TestBadValueIsEchoed(t *testing.T) {
	err := loadText(t, "[mqtt]\nmax_qos = 7\n")
	if err == nil || !strings.Contains(err.Error(), "7") {
		t.Fatalf("%v, want the value 7 named", err)
	}
	err = loadText(t, "[session]\nmax_expiry = \"forever\"\n")
	if err == nil || !strings.Contains(err.Error(), "forever") {
		t.Fatalf("%v, want the value forever named", err)
	}
}
