package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/server"
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
