package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/server"
)

// httpDo makes one request; hdr are header names and values, "basic" taking "user:password". A
// request with a password waits as long as a login (connectTimeout): the server checks it first.
func httpDo(t *testing.T, method, url, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	wait := waitTimeout
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "basic" {
			wait = connectTimeout
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "basic" {
			u, p, _ := strings.Cut(hdr[i+1], ":")
			req.SetBasicAuth(u, p)
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// openStream starts a GET and returns a line reader over its body; the stream ends with the test.
func openStream(t *testing.T, url, accept string) (*bufio.Reader, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return bufio.NewReader(resp.Body), resp
}

// nextLine reads lines until one starts with prefix, failing after waitTimeout.
func nextLine(t *testing.T, rd *bufio.Reader, prefix string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				got <- "ERROR: " + err.Error()
				return
			}
			if strings.HasPrefix(l, prefix) && strings.TrimSpace(l) != "" {
				got <- strings.TrimRight(strings.TrimPrefix(l, prefix), "\n")
				return
			}
		}
	}()
	select {
	case l := <-got:
		if strings.HasPrefix(l, "ERROR: ") {
			t.Fatalf("stream ended: %s", l)
		}
		return l
	case <-time.After(waitTimeout):
		t.Fatalf("no line %q within %v", prefix, waitTimeout)
	}
	return ""
}

func TestHTTPPublishReachesMQTT(t *testing.T) {
	srv := startServer(t)
	sub := v5(t, srv, "sub")
	sub.sub("sensors/#", 1)
	base := "http://" + srv.Addr("http")
	resp, body := httpDo(t, "POST", base+"/v1/pub/sensors/kitchen/temp?qos=1&prop=unit=C&expiry=60", "21.5", "Content-Type", "text/plain")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	var pr httpapi.PublishResult
	if err := json.Unmarshal([]byte(body), &pr); err != nil || pr.ID == "" || pr.Matched != 1 {
		t.Fatalf("publish answer %s: %v", body, err)
	}
	m := sub.expect("sensors/kitchen/temp", "21.5")
	if m.Properties.ContentType != "text/plain" || m.Properties.User.Get("unit") != "C" || m.Properties.MessageExpiry == nil {
		t.Fatalf("properties %+v", m.Properties)
	}
	// curl -d sends a form content type; it is not taken as the payload's.
	httpDo(t, "POST", base+"/v1/pub/sensors/x", "y", "Content-Type", "application/x-www-form-urlencoded")
	if m := sub.expect("sensors/x", "y"); m.Properties.ContentType != "" {
		t.Fatalf("form content type kept: %q", m.Properties.ContentType)
	}
	for _, c := range []struct {
		url, body string
		status    int
		code      string
	}{
		{"/v1/pub/a/+/b", "x", 400, "topic_invalid"},
		{"/v1/pub/a?qos=3", "x", 400, "bad_parameter"},
		{"/v1/pub/a", strings.Repeat("x", 1<<20+1), 413, "body_too_large"},
	} {
		resp, body := httpDo(t, "POST", base+c.url, c.body)
		if resp.StatusCode != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("POST %s: %d %s", c.url, resp.StatusCode, body)
		}
	}
}

func TestMQTTPublishReachesHTTPSubscribers(t *testing.T) {
	srv := startServer(t)
	base := "http://" + srv.Addr("http")
	sse, resp := openStream(t, base+"/v1/sub/news/%23", "text/event-stream")
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE content type %q", resp.Header.Get("Content-Type"))
	}
	nextLine(t, sse, ": subscribed")
	nd, resp := openStream(t, base+"/v1/sub/news/%23", "application/x-ndjson")
	if resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("NDJSON content type %q", resp.Header.Get("Content-Type"))
	}
	waitSubscriptions(t, srv, 2)
	pub := v5(t, srv, "pub")
	pub.publish(&paho.Publish{Topic: "news/today", QoS: 1, Payload: []byte("hello"), Properties: &paho.PublishProperties{ContentType: "text/plain"}})
	pub.publish(&paho.Publish{Topic: "news/bin", QoS: 0, Payload: []byte{0xff, 0x00}})

	var ev httpapi.Event
	id := nextLine(t, sse, "id: ")
	if err := json.Unmarshal([]byte(nextLine(t, sse, "data: ")), &ev); err != nil || ev.Topic != "news/today" ||
		ev.Payload == nil || *ev.Payload != "hello" || ev.ContentType != "text/plain" || ev.ID != id {
		t.Fatalf("SSE event %+v (id %s): %v", ev, id, err)
	}
	if err := json.Unmarshal([]byte(nextLine(t, sse, "data: ")), &ev); err != nil || ev.PayloadBase64 != "/wA=" {
		t.Fatalf("binary payload %+v: %v", ev, err)
	}
	var got []string
	for range 2 {
		var e httpapi.Event
		line := nextLine(t, nd, "")
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("NDJSON line %q: %v", line, err)
		}
		got = append(got, e.Topic)
	}
	if strings.Join(got, ",") != "news/today,news/bin" {
		t.Fatalf("NDJSON topics %v", got)
	}
}

// waitSubscriptions waits until the core holds n subscriptions.
func waitSubscriptions(t *testing.T, srv *server.Server, n int64) {
	t.Helper()
	eventually(t, waitTimeout, fmt.Sprintf("%d subscriptions", n), func() bool {
		return srv.Broker.Stats().Subscriptions.Load() >= n
	})
}

func TestLongPollSessionKeepsMessages(t *testing.T) {
	srv := startServer(t)
	base := "http://" + srv.Addr("http")
	// The first poll creates the session and its subscription; nothing is there yet.
	resp, body := httpDo(t, "GET", base+"/v1/sub/jobs/%23?poll=1&session=worker-1&wait=0s", "")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("first poll: %d %s", resp.StatusCode, body)
	}
	pub := v5(t, srv, "pub")
	for _, p := range []string{"a", "b", "c"} {
		pub.pub("jobs/"+p, 1, p)
	}
	resp, body = httpDo(t, "GET", base+"/v1/sub/jobs/%23?poll=1&session=worker-1&wait=5s", "")
	var evs []httpapi.Event
	if err := json.Unmarshal([]byte(body), &evs); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second poll: %d %s", resp.StatusCode, body)
	}
	var got []string
	for _, e := range evs {
		got = append(got, *e.Payload)
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("queued between polls: %v", got)
	}
	// Acknowledged: the next poll does not see them again.
	_, body = httpDo(t, "GET", base+"/v1/sub/jobs/%23?poll=1&session=worker-1&wait=0s", "")
	if strings.TrimSpace(body) != "[]" {
		t.Fatalf("third poll: %s", body)
	}
}

func TestHTTPRequestAnsweredByMQTT5(t *testing.T) {
	srv := startServer(t)
	base := "http://" + srv.Addr("http")
	responder := v5(t, srv, "svc", func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = append(cc.OnPublishReceived, func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			if p.Properties == nil || p.Properties.ResponseTopic == "" {
				return true, nil
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				_, _ = pr.Client.Publish(ctx, &paho.Publish{Topic: p.Properties.ResponseTopic, QoS: 1,
					Payload:    []byte("echo: " + string(p.Payload)),
					Properties: &paho.PublishProperties{CorrelationData: p.Properties.CorrelationData, ContentType: "text/plain"}})
			}()
			return true, nil
		})
	})
	responder.sub("svc/echo", 1)
	resp, body := httpDo(t, "POST", base+"/v1/req/svc/echo?timeout=5s", "ping")
	if resp.StatusCode != 200 || body != "echo: ping" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("request: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	// Nobody serves it: 503 at once, not after the timeout.
	start := time.Now()
	resp, body = httpDo(t, "POST", base+"/v1/req/svc/nobody?timeout=30s", "x")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "no_responders") || time.Since(start) > 5*time.Second {
		t.Fatalf("no responders: %d %s after %v", resp.StatusCode, body, time.Since(start))
	}
}

func TestHTTPFaceAuthorization(t *testing.T) {
	srv := startServer(t)
	if err := srv.Auth.PutUser(auth.User{Name: "alice", Grants: grants(t, "publish:users/%u/#", "subscribe:users/%u/#", "retain:users/%u/#")}, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr("http")
	if resp, body := httpDo(t, "POST", base+"/v1/pub/users/alice/x", "x"); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("anonymous publish: %d %s", resp.StatusCode, body)
	}
	if resp, _ := httpDo(t, "POST", base+"/v1/pub/users/alice/x", "x", "basic", "alice:nope"); resp.StatusCode != 401 {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	if resp, body := httpDo(t, "POST", base+"/v1/pub/users/bob/x", "x", "basic", "alice:pw"); resp.StatusCode != 403 || !strings.Contains(body, "not_authorized") {
		t.Fatalf("outside grants: %d %s", resp.StatusCode, body)
	}
	if resp, body := httpDo(t, "POST", base+"/v1/pub/users/alice/s?retain=1", "kept", "basic", "alice:pw"); resp.StatusCode != 200 {
		t.Fatalf("retain: %d %s", resp.StatusCode, body)
	}
	if resp, body := httpDo(t, "GET", base+"/v1/sub/users/bob/%23?poll=1&wait=0s", "", "basic", "alice:pw"); resp.StatusCode != 403 {
		t.Fatalf("subscribe outside grants: %d %s", resp.StatusCode, body)
	}
	resp, body := httpDo(t, "GET", base+"/v1/retained/users/alice/%23", "", "basic", "alice:pw")
	var evs []httpapi.Event
	if err := json.Unmarshal([]byte(body), &evs); err != nil || resp.StatusCode != 200 || len(evs) != 1 || *evs[0].Payload != "kept" || evs[0].Sender != "alice" {
		t.Fatalf("retained: %d %s", resp.StatusCode, body)
	}
	if resp, _ := httpDo(t, "GET", base+"/v1/retained/users/%23", "", "basic", "alice:pw"); resp.StatusCode != 403 {
		t.Fatalf("retained outside grants: %d", resp.StatusCode)
	}
}

func TestH2C(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.HTTP.H2C = true })
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: tr, Timeout: waitTimeout}
	resp, err := hc.Get("http://" + srv.Addr("http") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("spoke %s, want HTTP/2 without TLS", resp.Proto)
	}
	plain := startServer(t)
	if _, err := hc.Get("http://" + plain.Addr("http") + "/healthz"); err == nil {
		t.Fatal("h2c answered without http.h2c")
	}
}
