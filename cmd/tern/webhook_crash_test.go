package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// TestWebhookCountsAttemptsAcrossKill runs the real binary, kills it with SIGKILL while two
// endpoints hold a webhook request each, and starts it again on the same data directory. The
// hook with attempts left gets the same message again as attempt 2; the hook whose only attempt
// was under way sends the message to its dead-letter topic and the endpoint never again.
func TestWebhookCountsAttemptsAcrossKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildTern(t)
	dir := t.TempDir()
	mqttAddr, httpAddr := freeAddr(t), freeAddr(t)

	retry, retryHits := holdingEndpoint(t)
	last, lastHits := holdingEndpoint(t)
	srv := startTernHTTP(t, bin, dir, mqttAddr, httpAddr)
	base := "http://" + httpAddr
	createHook(t, base, `{"filter":"kill/retry","url":"`+retry+`","max_attempts":3}`)
	lastID := createHook(t, base, `{"filter":"kill/last","url":"`+last+`","max_attempts":1}`)
	deadTopic := "$webhooks/" + lastID + "/dead"
	dead := make(chan *paho.Publish, 10)
	dlq := dialDeadLetters(t, mqttAddr, true, dead)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := dlq.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: deadTopic, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_ = dlq.Disconnect(&paho.Disconnect{})

	publishHTTP(t, base, "kill/retry", "again")
	publishHTTP(t, base, "kill/last", "given up")
	first := awaitHit(t, retryHits, "the first attempt")
	awaitHit(t, lastHits, "the only attempt")
	srv.kill(t) // both endpoints still hold their request: neither delivery is complete

	srv = startTernHTTP(t, bin, dir, mqttAddr, httpAddr)
	again := awaitHit(t, retryHits, "the redelivery")
	if first.attempt != "1" || again.attempt != "2" || again.msgID != first.msgID || again.body != "again" {
		t.Fatalf("before the kill %+v, after %+v: want attempt 2 of the same message", first, again)
	}
	dlq = dialDeadLetters(t, mqttAddr, false, dead)
	select {
	case p := <-dead:
		if string(p.Payload) != "given up" || p.Properties.User.Get("tern-attempts") != "1" {
			t.Fatalf("dead letter %q %+v", p.Payload, p.Properties.User)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter for the message whose last attempt the kill cut off")
	}
	_ = dlq.Disconnect(&paho.Disconnect{})
	srv.stop(t) // an orderly stop waits for the webhooks: nothing more is sent after it
	select {
	case h := <-lastHits:
		t.Fatalf("the message was attempted again after its last attempt: %+v", h)
	default:
	}
}

type webhookHit struct{ msgID, attempt, body string }

// holdingEndpoint holds its first request until the connection ends (tern is killed), and
// answers the later ones 200. Every request is reported.
func holdingEndpoint(t *testing.T) (string, <-chan webhookHit) {
	hits := make(chan webhookHit, 10)
	held := make(chan struct{}, 1)
	held <- struct{}{}
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1024))
		hits <- webhookHit{r.Header.Get("X-Tern-Message-Id"), r.Header.Get("X-Tern-Attempt"), string(body)}
		select {
		case <-held:
			select {
			case <-r.Context().Done():
			case <-done:
			}
			w.WriteHeader(http.StatusInternalServerError)
		default:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL, hits
}

func awaitHit(t *testing.T, hits <-chan webhookHit, what string) webhookHit {
	t.Helper()
	select {
	case h := <-hits:
		return h
	case <-time.After(10 * time.Second):
		t.Fatalf("no request for %s", what)
		return webhookHit{}
	}
}

func createHook(t *testing.T, base, spec string) string {
	t.Helper()
	resp, body := post(t, base+"/v1/webhooks", spec)
	var h struct{ ID string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &h) != nil || h.ID == "" {
		t.Fatalf("create webhook: %d %s", resp.StatusCode, body)
	}
	return h.ID
}

func publishHTTP(t *testing.T, base, topic, payload string) {
	t.Helper()
	if resp, body := post(t, base+"/v1/pub/"+topic+"?qos=1", payload); resp.StatusCode/100 != 2 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
}

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// dialDeadLetters connects the persistent session that collects dead letters.
func dialDeadLetters(t *testing.T, addr string, clean bool, got chan<- *paho.Publish) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 5 * time.Second,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet
			return true, nil
		}}})
	expiry := uint32(3600)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: "dead-letters", CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect: %v %+v", err, ack)
	}
	return c
}

// startTernHTTP starts the binary with MQTT and HTTP listeners, webhooks allowed to reach this
// machine and quick retries.
func startTernHTTP(t *testing.T, bin, dataDir, mqttAddr, httpAddr string) *ternProcess {
	t.Helper()
	return serveTern(t, bin, httpAddr, []string{"TERN_WEBHOOKS__ALLOW_PRIVATE=true", "TERN_WEBHOOKS__BACKOFF_BASE=10ms"},
		"serve", "--mqtt", mqttAddr, "--http", httpAddr, "--unix", "", "--data-dir", dataDir, "--log-level", "info")
}
