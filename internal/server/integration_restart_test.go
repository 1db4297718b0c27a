package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
)

// These tests stop tern and start it again on the same data directory, and check through real
// clients that each kind of stored state came back. The core's tests cover a crash (no orderly
// stop) on the same state; cmd/tern's crash test kills the real binary.

// durable returns options for a server on dir with the disk store, plus more options.
func durable(dir string, more ...func(*config.Config)) []func(*config.Config) {
	return append([]func(*config.Config){func(c *config.Config) { c.DataDir = dir }}, more...)
}

func restart(t *testing.T, srv *server.Server, dir string, more ...func(*config.Config)) *server.Server {
	t.Helper()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	return startServer(t, durable(dir, more...)...)
}

func TestRestartKeepsSessionSubscriptionsAndOfflineQueue(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, durable(dir)...)
	sub := persistentV5(t, srv, "keeper", true, 3600)
	sub.subscribe(paho.SubscribeOptions{Topic: "keep/#", QoS: 1})
	sub.offline(srv, nil)
	pub := v5(t, srv, uniqueID("pub"))
	pub.pub("keep/a", 1, "one")
	pub.pub("keep/b", 0, "two (QoS 0, queued too)")
	pub.pub("keep/c", 2, "three")

	srv = restart(t, srv, dir)
	sub = persistentV5(t, srv, "keeper", false, 3600)
	if !sub.ack.SessionPresent {
		t.Fatal("session not present after restart")
	}
	for _, want := range []struct{ topic, payload string }{{"keep/a", "one"}, {"keep/b", "two (QoS 0, queued too)"}, {"keep/c", "three"}} {
		sub.expect(want.topic, want.payload)
	}
	// The subscription itself came back: new messages reach it.
	v5(t, srv, uniqueID("pub")).pub("keep/new", 1, "after")
	sub.expect("keep/new", "after")
}

func TestRestartRedeliversUnacknowledgedWithDup(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, durable(dir)...)
	r, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte("lazy"), Props: expiryProps(3600)})
	r.subscribe(1, 0, packet.Subscription{Filter: []byte("lazy/t"), QoS: 1})
	v5(t, srv, uniqueID("pub")).pub("lazy/t", 1, "ack me")
	first := r.expectPublish("lazy/t", "ack me") // never acknowledged

	srv = restart(t, srv, dir)
	r2, ack := rawV5(t, srv, &packet.Connect{ClientID: []byte("lazy"), Props: expiryProps(3600)})
	if !ack.SessionPresent {
		t.Fatal("session not present")
	}
	again := r2.expectPublish("lazy/t", "ack me")
	if !again.Dup || again.PacketID != first.PacketID {
		t.Fatalf("redelivery dup=%v pid=%d, want dup with pid %d", again.Dup, again.PacketID, first.PacketID)
	}
}

func TestRestartKeepsExactlyOnceStateBothWays(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, durable(dir)...)
	obs := persistentV5(t, srv, "observer", true, 3600)
	obs.sub("once/#", 2)
	p, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte("sender"), Props: expiryProps(3600)})
	p.send(&packet.Publish{QoS: 2, PacketID: 9, Topic: []byte("once/x"), Payload: []byte("exactly once")})
	if rec := expectPacket[*packet.Pubrec](p); rec.PacketID != 9 || rec.Reason.IsError() {
		t.Fatalf("PUBREC %+v", rec)
	}
	obs.expect("once/x", "exactly once")
	// The observer's own QoS 2 exchange (PUBREC, PUBREL, PUBCOMP) finishes after paho hands over
	// the message; going offline before it does would rightly bring the message again.
	eventually(t, waitTimeout, "the observer's delivery completed", func() bool {
		for _, si := range srv.Broker.Sessions(0) {
			if si.ClientID == "observer" {
				return si.Inflight == 0
			}
		}
		return false
	})
	obs.offline(srv, nil)

	srv = restart(t, srv, dir)
	p2, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte("sender"), Props: expiryProps(3600)})
	// The sender never saw the PUBREC as far as it knows: it sends again, with DUP.
	p2.send(&packet.Publish{Dup: true, QoS: 2, PacketID: 9, Topic: []byte("once/x"), Payload: []byte("exactly once")})
	expectPacket[*packet.Pubrec](p2)
	p2.send(&packet.Pubrel{PacketID: 9})
	if comp := expectPacket[*packet.Pubcomp](p2); comp.Reason != packet.Success {
		t.Fatalf("PUBCOMP reason %v: the release was not known after the restart", comp.Reason)
	}
	obs = persistentV5(t, srv, "observer", false, 3600)
	v5(t, srv, uniqueID("pub")).pub("once/marker", 1, "end")
	if got := obs.until("once/marker"); len(got) != 0 {
		t.Fatalf("the resent publish was routed again: %s", describe(got))
	}
}

func TestRestartKeepsRetained(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, durable(dir)...)
	pub := v5(t, srv, uniqueID("pub"))
	pub.publish(&paho.Publish{Topic: "ret/a", QoS: 1, Retain: true, Payload: []byte("kept")})
	pub.publish(&paho.Publish{Topic: "ret/b", QoS: 1, Retain: true, Payload: []byte("cleared")})
	pub.publish(&paho.Publish{Topic: "ret/b", QoS: 1, Retain: true})

	srv = restart(t, srv, dir)
	sub := v5(t, srv, uniqueID("sub"))
	sub.sub("ret/#", 1)
	if m := sub.expect("ret/a", "kept"); !m.Retain {
		t.Fatal("not flagged retained")
	}
	sub.quiet()
}

func TestRestartKeepsDelayedWill(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, durable(dir)...)
	watch := persistentV5(t, srv, "watcher", true, 3600)
	watch.sub("wills/#", 1)
	watch.offline(srv, nil)
	dev, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte("device"), Props: expiryProps(3600),
		Will: true, WillQoS: 1, WillTopic: []byte("wills/device"), WillPayload: []byte("device lost"),
		WillProps: willDelay(1)})
	_ = dev.conn.Close() // gone without DISCONNECT: the will waits out its 1 s delay
	waitConnected(t, srv, 0)

	srv = restart(t, srv, dir)
	watch = persistentV5(t, srv, "watcher", false, 3600)
	watch.expect("wills/device", "device lost")
}

func TestRestartKeepsLimitsAndDropCounters(t *testing.T) {
	dir := t.TempDir()
	limit := func(c *config.Config) { c.Session.MaxQueuedMessages = 2 }
	srv := startServer(t, durable(dir, limit)...)
	sub := persistentV5(t, srv, "small", true, 3600)
	sub.sub("small/#", 1)
	sub.offline(srv, nil)
	pub := v5(t, srv, uniqueID("pub"))
	for _, p := range []string{"1", "2", "3", "4", "5"} {
		pub.pub("small/t", 1, p)
	}

	srv = restart(t, srv, dir, limit)
	st := fetchStats(t, srv)
	var found bool
	for _, s := range st.TopSessions {
		if s.ClientID == "small" {
			found = true
			if s.Dropped != 3 || s.Queued != 2 {
				t.Fatalf("after restart: dropped %d queued %d, want 3 and 2", s.Dropped, s.Queued)
			}
		}
	}
	if !found || st.Store.DiskBytes <= 0 || st.Store.DataDir != dir {
		t.Fatalf("stats %+v", st)
	}
	sub = persistentV5(t, srv, "small", false, 3600)
	sub.expect("small/t", "4")
	sub.expect("small/t", "5")
}

func fetchStats(t *testing.T, srv *server.Server) server.Stats {
	t.Helper()
	resp, err := http.Get("http://" + srv.Addr("http") + "/v1/stats?sessions=100")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/stats: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	var st server.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestUnusableDataDirRefused: tern refuses to start on a data directory it cannot use, saying
// which and why, rather than running without its durable state. (The store's own tests cover a
// directory written by an unknown format version.)
func TestUnusableDataDirRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = file
	cfg.Listen = config.Listen{MQTT: "127.0.0.1:0"}
	s, err := server.Start(cfg, nil)
	if err == nil {
		_ = s.Close()
		t.Fatal("a data directory that is a file was accepted")
	}
	if !strings.Contains(err.Error(), file) {
		t.Fatalf("error %q does not name the directory", err)
	}
}

func expiryProps(secs uint32) packet.Properties {
	var p packet.Properties
	p.SessionExpiry = secs
	p.Set(packet.PropSessionExpiry)
	return p
}

func willDelay(secs uint32) packet.Properties {
	var p packet.Properties
	p.WillDelay = secs
	p.Set(packet.PropWillDelay)
	return p
}
