package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
)

// startStores runs tern memory-only and, on a data directory, with its durable store.
func startStores(t *testing.T) map[string]*server.Server {
	t.Helper()
	return map[string]*server.Server{
		"memory": startTern(t),
		"disk": servertest.Start(t, func(c *config.Config) {
			c.Listen.HTTP = ""
			c.DataDir = t.TempDir()
		}),
	}
}

// sessionsOf lists the broker's sessions whose client id starts with prefix.
func sessionsOf(srv *server.Server, prefix string) []string {
	var ids []string
	for _, s := range srv.Stats(0).TopSessions {
		if strings.HasPrefix(s.ClientID, prefix) {
			ids = append(ids, fmt.Sprintf("%s online=%v durable=%v queued=%d inflight=%d", s.ClientID, s.Online, s.Durable, s.Queued, s.Inflight))
		}
	}
	return ids
}

// sessionWait bounds the waits for the broker to take in what a client did: a disconnect, or a
// removal that the durable store writes, which takes seconds when other tests load the machine
// and its disk. It bounds a failure; it measures nothing.
const sessionWait = 30 * time.Second

// waitNoSessions waits (at most sessionWait) until the broker has no session starting with
// prefix: a client's disconnect reaches the broker a moment after the client is done.
func waitNoSessions(t *testing.T, srv *server.Server, prefix string) {
	t.Helper()
	deadline := time.Now().Add(sessionWait)
	for {
		left := sessionsOf(srv, prefix)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions left behind: %v", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEnginePersistentSessions: QoS 1 to subscribers with persistent sessions delivers
// everything, and the run leaves no session behind unless told to keep them.
func TestEnginePersistentSessions(t *testing.T) {
	for store, srv := range startStores(t) {
		for _, ver := range []string{"3.1.1", "5"} {
			t.Run(store+"/v"+ver, func(t *testing.T) {
				cfg := Config{URL: "mqtt://" + srv.Addr("mqtt"), MQTTVersion: ver, Publishers: 2, Subscribers: 2,
					QoS: 1, Count: 500, Duration: 20 * time.Second, Warmup: 10, Persistent: true,
					Topic: "persist/" + store + ver, ClientPrefix: "persist-test"}
				r, err := Run(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				if !r.Persistent || r.Expected != 2000 {
					t.Fatalf("persistent %v expected %d", r.Persistent, r.Expected)
				}
				checkClean(t, r)
				waitNoSessions(t, srv, "persist-test-"+r.RunID)

				// Kept, the sessions stay with their subscriptions, offline.
				cfg.KeepSessions = true
				r, err = Run(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				checkClean(t, r)
				prefix := "persist-test-" + r.RunID
				deadline := time.Now().Add(5 * time.Second)
				for {
					kept := sessionsOf(srv, prefix)
					if len(kept) == 2 && !strings.Contains(strings.Join(kept, " "), "online=true") {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("kept sessions: %v", kept)
					}
					time.Sleep(10 * time.Millisecond)
				}
				if err := cfg.normalize(); err != nil {
					t.Fatal(err)
				}
				d, err := newDialer(&cfg)
				if err != nil {
					t.Fatal(err)
				}
				if errs := removeSessions(context.Background(), d, []string{prefix + "-s0", prefix + "-s1"}); errs != nil {
					t.Fatal(errs)
				}
				waitNoSessions(t, srv, prefix)
			})
		}
	}
}

// TestPhasesQueueAndDrain: Subscribe leaves offline sessions, a run without subscribers fills
// their queues, Drain receives everything and removes the sessions.
func TestPhasesQueueAndDrain(t *testing.T) {
	for store, srv := range startStores(t) {
		for _, ver := range []string{"3.1.1", "5"} {
			t.Run(store+"/v"+ver, func(t *testing.T) {
				const subs, pubs, count = 2, 2, 800
				cfg := Config{URL: "mqtt://" + srv.Addr("mqtt"), MQTTVersion: ver, QoS: 1, Subscribers: subs,
					Duration: 20 * time.Second, Topic: "phases/" + store + ver, ClientPrefix: "phase-test", RunID: 0xbeef}
				if store == "disk" {
					cfg.RunID++
				}
				if ver == "5" {
					cfg.RunID += 0x10
				}
				prefix := fmt.Sprintf("phase-test-%08x", cfg.RunID)
				sr, err := Subscribe(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				if len(sr.ClientIDs) != subs || sr.ClientIDs[1] != prefix+"-s1" || sr.Resumed != 0 || sr.Filter != cfg.Topic+"/#" {
					t.Fatalf("subscribe: %+v", sr)
				}

				fill := cfg
				fill.Subscribers, fill.Publishers, fill.Count = 0, pubs, count
				r, err := Run(context.Background(), fill)
				if err != nil {
					t.Fatal(err)
				}
				if r.Sent != pubs*count || r.Acked != r.Sent || r.Expected != 0 || len(r.Errors) > 0 {
					t.Fatalf("fill: sent %d acked %d expected %d errors %v", r.Sent, r.Acked, r.Expected, r.Errors)
				}
				// Kept for the sessions: queued, or in flight when the first publishes reached a
				// session whose client's DISCONNECT the broker had not handled yet (Subscribe
				// returns once it has sent it); both are delivered by Drain. Under load the
				// broker may handle that DISCONNECT only after the fill, so this waits for the
				// sessions to be offline with everything kept, not just for the fill to end.
				waitKept(t, srv, prefix, subs*pubs*count)

				drain := cfg
				drain.Publishers, drain.Count = pubs, count
				dr, err := Drain(context.Background(), drain)
				if err != nil {
					t.Fatal(err)
				}
				if dr.Phase != "drain" || dr.Expected != subs*pubs*count || dr.Delivered != dr.Expected || dr.Lost != 0 ||
					dr.Duplicates != 0 || dr.Foreign != 0 || len(dr.Errors) > 0 || dr.DeliverRate <= 0 {
					var b strings.Builder
					_ = dr.WriteText(&b)
					t.Fatalf("drain:\n%s", b.String())
				}
				var b strings.Builder
				if err := dr.WriteText(&b); err != nil || !strings.Contains(b.String(), "drained") {
					t.Fatalf("drain text: %v\n%s", err, b.String())
				}
				waitNoSessions(t, srv, prefix)

				// Drained again, the sessions are gone: nothing comes, and it says why.
				drain.Drain = 100 * time.Millisecond
				dr, err = Drain(context.Background(), drain)
				if err != nil {
					t.Fatal(err)
				}
				if dr.Delivered != 0 || dr.Lost != dr.Expected || len(dr.Errors) != subs ||
					!strings.Contains(dr.Errors[0], "no session") {
					t.Fatalf("second drain: delivered %d lost %d errors %v", dr.Delivered, dr.Lost, dr.Errors)
				}
				waitNoSessions(t, srv, prefix)
			})
		}
	}
}

// waitKept waits (at most sessionWait) until the sessions starting with prefix+"-s" are all
// offline and keep want messages between them, queued or in flight.
func waitKept(t *testing.T, srv *server.Server, prefix string, want int) {
	t.Helper()
	deadline := time.Now().Add(sessionWait)
	for {
		kept, online := 0, 0
		for _, s := range srv.Stats(0).TopSessions {
			if strings.HasPrefix(s.ClientID, prefix+"-s") {
				kept += s.Queued + s.Inflight
				if s.Online {
					online++
				}
			}
		}
		if online == 0 && kept == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kept %d with %d sessions online, want %d offline: %v", kept, online, want, sessionsOf(srv, prefix))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPhaseConfigErrors(t *testing.T) {
	ctx := context.Background()
	base := Config{URL: "mqtt://127.0.0.1:1", Publishers: 1, Subscribers: 1, Count: 1, Duration: time.Second}
	noSubs := base
	noSubs.Subscribers = 0
	if _, err := Subscribe(ctx, noSubs); err == nil {
		t.Error("subscribe with no subscribers")
	}
	if _, err := Drain(ctx, noSubs); err == nil {
		t.Error("drain with no subscribers")
	}
	noCount := base
	noCount.Count = 0
	if _, err := Drain(ctx, noCount); err == nil {
		t.Error("drain with no count")
	}
	shared := base
	shared.Shared = true
	if _, err := Drain(ctx, shared); err == nil {
		t.Error("drain of shared subscriptions")
	}
}
