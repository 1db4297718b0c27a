package console

import (
	"fmt"
	"testing"
	"time"
)

// TestSessionTableBoundsAndExpiry: sessions end after idleTimeout unused and maxLifetime in all,
// each identity keeps at most maxPerIdentity (its oldest goes), and the table at most
// maxSessions.
func TestSessionTableBoundsAndExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tab := newTable(func() time.Time { return now })

	a := tab.add(&session{identity: "alice"})
	if tab.get(a) == nil || tab.get("") != nil || tab.get("forged") != nil {
		t.Fatal("lookup")
	}
	// Used every 50 minutes, it lives on until maxLifetime (14 uses: 11 h 40 min).
	for i := range 14 {
		now = now.Add(50 * time.Minute)
		if tab.get(a) == nil {
			t.Fatalf("ended at use %d though used within the idle timeout", i+1)
		}
	}
	now = time.Unix(1_800_000_000, 0).Add(maxLifetime + time.Second)
	if tab.get(a) != nil {
		t.Fatal("outlived maxLifetime")
	}
	b := tab.add(&session{identity: "bob"})
	now = now.Add(idleTimeout + time.Second)
	if tab.get(b) != nil {
		t.Fatal("outlived idleTimeout unused")
	}

	// Per identity: the oldest goes.
	var carol []string
	for range maxPerIdentity + 2 {
		carol = append(carol, tab.add(&session{identity: "carol"}))
	}
	if tab.get(carol[0]) != nil || tab.get(carol[1]) != nil || tab.get(carol[2]) == nil || tab.get(carol[len(carol)-1]) == nil {
		t.Fatal("carol's oldest sessions were kept")
	}
	// In all: never more than maxSessions.
	for i := range maxSessions + 10 {
		tab.add(&session{identity: fmt.Sprint("u", i)})
	}
	if n := tab.len(); n != maxSessions {
		t.Fatalf("%d sessions, want at most %d", n, maxSessions)
	}
	// Each session has its own CSRF token.
	x, y := tab.get(tab.add(&session{identity: "x"})), tab.get(tab.add(&session{identity: "y"}))
	if x.csrf == "" || x.csrf == y.csrf {
		t.Fatal("CSRF tokens")
	}
}
