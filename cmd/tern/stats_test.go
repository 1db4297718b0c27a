package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/uplink"
)

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
