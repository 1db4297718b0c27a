package broker

import (
	"testing"
	"unsafe"
)

// TestSizes logs the size of the structures every connected session holds, for the figures in
// docs/decisions.md ("An idle connection's bytes, second pass"); it checks nothing.
func TestSizes(t *testing.T) {
	t.Logf("Session %d B, Client %d B, subscription %d B",
		unsafe.Sizeof(Session{}), unsafe.Sizeof(Client{}), unsafe.Sizeof(subscription{}))
}

// Without an authenticator every client without a certificate shares one principal.
func TestOpenClientsSharePrincipal(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	a, _, _ := connect(t, b, ConnectRequest{ClientID: "a"})
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "c"})
	if a.Principal() != c.Principal() || !a.Principal().Unrestricted() {
		t.Fatalf("principals %p and %p, want one shared unrestricted", a.Principal(), c.Principal())
	}
	// What the client does still names it by its own client id.
	if a.ClientID != "a" || c.ClientID != "c" {
		t.Fatalf("client ids %q, %q", a.ClientID, c.ClientID)
	}
}
