package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tern.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const siteConfig = `
[route]
id = "site-a"

[[route.uplink]]
name = "cloud"
url = "mqtts://dr.example.com:8884"
namespaces = ["bldg1"]
cert_file = "site.crt"
key_file = "site.key"
max_queued_messages = 0
inflight = 16

[[route.uplink]]
name = "backup"
url = "mqtts://dr2.example.com:8884"
namespaces = ["bldg2", "bldg3"]
cert_file = "site.crt"
key_file = "site.key"
`

// Every [[route.uplink]] starts from the defaults: a key it leaves out gets its default, an
// explicit zero stays zero.
func TestUplinksTakeDefaultsPerEntry(t *testing.T) {
	cfg, err := Load(writeConfig(t, siteConfig), nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	ups := cfg.Route.Uplinks
	if len(ups) != 2 || cfg.Route.ID != "site-a" {
		t.Fatalf("uplinks %+v, id %q", ups, cfg.Route.ID)
	}
	d := DefaultUplink()
	a, b := ups[0], ups[1]
	if a.Name != "cloud" || a.MaxQueuedMessages != 0 || a.Inflight != 16 || a.MaxQueuedBytes != d.MaxQueuedBytes ||
		a.SessionExpiry != 168*time.Hour || a.QueueFullPolicy != "drop_oldest" || a.KeepAlive != 30*time.Second {
		t.Errorf("first uplink %+v", a)
	}
	if b.MaxQueuedMessages != 100000 || b.Inflight != 256 || !slices.Equal(b.Namespaces, []string{"bldg2", "bldg3"}) {
		t.Errorf("second uplink %+v", b)
	}
}

// TERN_ROUTE__UPLINK__<i>__<KEY> overrides a key of the file's uplink i, or adds uplink i when
// it is the next one; the route's own keys are plain TERN_ROUTE__ variables.
func TestUplinksFromTheEnvironment(t *testing.T) {
	env := func() []string {
		return []string{
			"TERN_ROUTE__UPLINK__0__URL=mqtts://other.example.com:9000",
			"TERN_ROUTE__UPLINK__0__DRAIN_RATE=500",
			"TERN_ROUTE__UPLINK__2__NAME=third",
			"TERN_ROUTE__UPLINK__2__URL=mqtts://dr3.example.com:8884",
			"TERN_ROUTE__UPLINK__2__NAMESPACES=bldg4, bldg5",
			"TERN_ROUTE__UPLINK__2__CERT_FILE=c",
			"TERN_ROUTE__UPLINK__2__KEY_FILE=k",
			"TERN_ROUTE__ID=from-env",
		}
	}
	cfg, err := Load(writeConfig(t, siteConfig), nil, env)
	if err != nil {
		t.Fatal(err)
	}
	ups := cfg.Route.Uplinks
	if len(ups) != 3 || ups[0].URL != "mqtts://other.example.com:9000" || ups[0].DrainRate != 500 || ups[0].Inflight != 16 {
		t.Fatalf("overridden uplink: %+v", ups)
	}
	if u := ups[2]; u.Name != "third" || !slices.Equal(u.Namespaces, []string{"bldg4", "bldg5"}) || u.Inflight != 256 {
		t.Errorf("uplink from the environment: %+v", u)
	}
	if cfg.Route.ID != "from-env" {
		t.Errorf("route.id %q", cfg.Route.ID)
	}
	_, err = Load(writeConfig(t, siteConfig), nil, func() []string { return []string{"TERN_ROUTE__UPLINK__5__NAME=x"} })
	if err == nil || !strings.Contains(err.Error(), "follow on from 0") {
		t.Errorf("a gap in the indexes: %v", err)
	}
}

// A designated router's keys, from the file and the environment.
func TestDesignatedRouter(t *testing.T) {
	tls := "[tls]\ncert_file = \"s.crt\"\nkey_file = \"s.key\"\nclient_ca_file = \"ca.crt\"\n"
	cfg, err := Load(writeConfig(t, tls+"[route]\nlisten = \"127.0.0.1:8884\"\ndesignated = [\"bldg1\"]\n"), nil,
		func() []string { return []string{"TERN_ROUTE__DESIGNATED=bldg1,bldg2"} })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Route.Designated, []string{"bldg1", "bldg2"}) || cfg.Route.Listen != "127.0.0.1:8884" {
		t.Errorf("route %+v", cfg.Route)
	}
}

// Each mistake is named with where it is.
func TestRouteValidation(t *testing.T) {
	uplink := func(extra string) string {
		return "[[route.uplink]]\nname = \"cloud\"\nurl = \"mqtts://dr:8884\"\nnamespaces = [\"bldg1\"]\n" +
			"cert_file = \"c\"\nkey_file = \"k\"\n" + extra
	}
	cases := []struct{ file, want string }{
		{"[route]\nlisten = \"127.0.0.1:8884\"\ndesignated = [\"a\"]\n", "requires client certificates"},
		{"[route]\ndesignated = [\"a\"]\n", "set route.listen"},
		{"[route]\nid = \"a/b\"\n", "route.id"},
		{"[tls]\ncert_file = \"s\"\nkey_file = \"k\"\nclient_ca_file = \"ca\"\n[route]\nlisten = \"127.0.0.1:1\"\ndesignated = [\"a/b\"]\n", "one topic level"},
		{uplink("") + strings.Replace(uplink(""), "mqtts://dr:8884", "mqtts://dr2:8884", 1), "name used twice"},
		{uplink("") + strings.Replace(uplink(""), "\"cloud\"", "\"other\"", 1), "also in route.uplink \"cloud\""},
		{strings.Replace(uplink(""), "mqtts://dr:8884", "mqtt://dr:1883", 1), "use mqtts://host:port"},
		{strings.Replace(uplink(""), "cert_file = \"c\"\n", "", 1), "client certificate"},
		{uplink("inflight = 0\n"), "inflight 0"},
		{uplink("queue_full_policy = \"sometimes\"\n"), "queue_full_policy"},
		{uplink("keep_alive = \"100ms\"\n"), "keep_alive"},
		{strings.Replace(uplink(""), "[\"bldg1\"]", "[\"$SYS\"]", 1), "the broker's own"},
		{uplink("colour = \"blue\"\n"), "route.uplink[0].colour"}, // unknown keys are errors, as elsewhere
	}
	for _, c := range cases {
		_, err := Load(writeConfig(t, c.file), nil, noEnv)
		if c.want == "" {
			if err != nil {
				t.Errorf("%q: %v", c.file, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to mention %q", c.file, err, c.want)
		}
	}
}
