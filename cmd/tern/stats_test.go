package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/uplink"
)

// The session table names each session's identity, as the README shows.
func TestStatsTableShowsIdentity(t *testing.T) {
	var st server.Stats
	st.TopSessions = []broker.SessionInfo{{ClientID: "meter-7", Identity: "meter", Durable: true, Queued: 3},
		{ClientID: "anon"}}
	var out bytes.Buffer
	printStats(&out, st)
	lines := strings.Split(out.String(), "\n")
	var header, row, anon string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "CLIENT ID"):
			header = l
		case strings.HasPrefix(l, "meter-7"):
			row = l
		case strings.HasPrefix(l, "anon"):
			anon = l
		}
	}
	if !strings.Contains(header, "IDENTITY") || !strings.Contains(row, "meter ") || !strings.Contains(anon, " - ") {
		t.Fatalf("table:\n%s", out.String())
	}
}

// tern stats shows the uplinks of a site router and the sites of a designated router.
func TestPrintStatsRoute(t *testing.T) {
	var b bytes.Buffer
	printStats(&b, server.Stats{Route: &server.RouteStats{RouterID: "site-a", Designated: []string{"bldg1"}, RoutedGaps: 3,
		Uplinks: []uplink.LinkStats{{Name: "cloud", Queued: 12, DroppedFull: 2, LastError: "dial tcp: refused"}}}})
	out := b.String()
	for _, want := range []string{"router id", "site-a", "designated for", "0 / 3", "UPLINK", "cloud", "uplink cloud: dial tcp: refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}
