package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/config"
)

// TestWebhookThroughTheAPI: a webhook created over HTTP receives MQTT publishes; one that points
// at a private address is refused unless the configuration allows it.
func TestWebhookThroughTheAPI(t *testing.T) {
	got := make(chan string, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Header.Get("X-Tern-Topic") + "=" + string(b)
	}))
	defer recv.Close()

	strict := startServer(t)
	resp, body := httpDo(t, "POST", "http://"+strict.Addr("http")+"/v1/webhooks", `{"filter":"orders/#","url":"`+recv.URL+`"}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "forbidden_target") || !strings.Contains(body, "webhooks.allow_private") {
		t.Fatalf("loopback target without allow_private: %d %s", resp.StatusCode, body)
	}
	// Special-purpose ranges beyond the private ones, and IPv6 forms carrying a private IPv4.
	for _, target := range []string{"http://192.0.0.9/", "http://198.18.0.1/", "http://[64:ff9b::a00:1]/", "http://[2002:c0a8:101::1]/"} {
		resp, body := httpDo(t, "POST", "http://"+strict.Addr("http")+"/v1/webhooks", `{"filter":"orders/#","url":"`+target+`"}`)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "forbidden_target") {
			t.Fatalf("%s without allow_private: %d %s", target, resp.StatusCode, body)
		}
	}

	srv := startServer(t, func(c *config.Config) {
		c.Webhooks.AllowPrivate = true
		c.Webhooks.BackoffBase = time.Millisecond
	})
	base := "http://" + srv.Addr("http")
	resp, body = httpDo(t, "POST", base+"/v1/webhooks", `{"filter":"orders/#","url":"`+recv.URL+`","secret":"k"}`)
	var h struct{ ID, Filter string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal([]byte(body), &h) != nil || h.ID == "" {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	pub := v5(t, srv, "pub")
	pub.pub("orders/1", 1, "first")
	httpDo(t, "POST", base+"/v1/pub/orders/2?qos=1", "second")
	for _, want := range []string{"orders/1=first", "orders/2=second"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("webhook got %q, want %q", g, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("webhook did not get %q", want)
		}
	}
	if resp, body := httpDo(t, "GET", base+"/v1/webhooks", ""); resp.StatusCode != 200 || !strings.Contains(body, h.ID) || strings.Contains(body, `"secret"`) {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if resp, _ := httpDo(t, "DELETE", base+"/v1/webhooks/"+h.ID, ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if resp, _ := httpDo(t, "DELETE", base+"/v1/webhooks/"+h.ID, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("delete again: %d", resp.StatusCode)
	}
}
