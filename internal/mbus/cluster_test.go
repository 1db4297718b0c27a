package mbus

import "testing"

// The other nodes' clients are read from their filters: only an mBus client's own
// mbus-to/{id}/# names a client, and only $rpc/{id}/{command} a command of one.
func TestRemoteClientFilters(t *testing.T) {
	for _, c := range []struct {
		filter string
		id     string
		ok     bool
	}{
		{"mbus-to/" + "org.example.a" + "/#", "org.example.a", true},
		{"mbus-to/a%2Fb/#", "a/b", true},
		{"mbus-to/+/#", "", false},
		{"mbus-to/#", "", false},
		{"mbus-to/a/b/#", "", false},
		{"mbus-to/a/+", "", false},
		{"mbus-to/%00/#", "", false},
		{"mbus-to//#", "", false},
		{"mbus/a/#", "", false},
		{"$share/g/mbus-to/a/#", "", false},
	} {
		if id, ok := directFilterClient(c.filter); id != c.id || ok != c.ok {
			t.Errorf("directFilterClient(%q) = %q %v, want %q %v", c.filter, id, ok, c.id, c.ok)
		}
	}
	for _, c := range []struct {
		filter, id, cmd string
		ok              bool
	}{
		{procedureTopic("org.example.a", "work"), "org.example.a", "work", true},
		{procedureTopic("a/b", "x+y"), "a/b", "x+y", true},
		{"$rpc/a/+", "", "", false},
		{"$rpc/a/#", "", "", false},
		{"$rpc/a", "", "", false},
		{"$rpc/a/b/c", "", "", false},
		{sharedProcedureFilter("svc", "work"), "", "", false},
	} {
		if id, cmd, ok := procedureOf(c.filter); id != c.id || cmd != c.cmd || ok != c.ok {
			t.Errorf("procedureOf(%q) = %q %q %v, want %q %q %v", c.filter, id, cmd, ok, c.id, c.cmd, c.ok)
		}
	}
}
