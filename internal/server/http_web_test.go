package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/webhook"
)

// webGet makes one request and returns status, body and response.
func webDo(t *testing.T, method, url string, header map[string]string) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	hc := &http.Client{Timeout: waitTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// TestUnknownRoutesAnswerJSON: a path no route serves gets the JSON error format (404
// not_found), a known path with another method 405 method_not_allowed with Allow; redirects to
// a cleaned path stay redirects.
func TestUnknownRoutesAnswerJSON(t *testing.T) {
	srv := startServer(t)
	base := "http://" + srv.Addr("http")
	for _, p := range []string{"/nothing", "/v1/nothing", "/v1", "/favicon.ico", "/console/nothing"} {
		status, body, resp := webDo(t, "GET", base+p, nil)
		if status != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" ||
			!strings.Contains(body, `"code":"not_found"`) {
			t.Errorf("GET %s: %d %q %s", p, status, resp.Header.Get("Content-Type"), body)
		}
	}
	status, body, resp := webDo(t, "DELETE", base+"/v1/stats", nil)
	if status != http.StatusMethodNotAllowed || !strings.Contains(body, `"code":"method_not_allowed"`) ||
		!strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("DELETE /v1/stats: %d %s (Allow %q)", status, body, resp.Header.Get("Allow"))
	}
	if status, _, resp := webDo(t, "GET", base+"/v1//stats", nil); (status != http.StatusMovedPermanently && status != http.StatusTemporaryRedirect) || resp.Header.Get("Location") != "/v1/stats" {
		t.Errorf("GET /v1//stats: %d to %q", status, resp.Header.Get("Location"))
	}
	// The routes that exist still answer.
	if status, _, _ := webDo(t, "GET", base+"/healthz", nil); status != http.StatusOK {
		t.Errorf("healthz: %d", status)
	}
	if status, body, _ := webDo(t, "GET", base+"/", nil); status != http.StatusOK || !strings.Contains(body, "tern console") {
		t.Errorf("GET /: %d", status)
	}
}

// TestCORS: off by default; with http.cors_origins, a listed origin's preflight is answered and
// its requests (publish, SSE) carry Access-Control-Allow-Origin, without credentials; another
// origin gets no CORS headers.
func TestCORS(t *testing.T) {
	preflight := map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization,content-type"}

	off := startServer(t)
	if _, _, resp := webDo(t, "OPTIONS", "http://"+off.Addr("http")+"/v1/pub/a", preflight); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS answered with no origins configured")
	}

	srv := startServer(t, func(c *config.Config) { c.HTTP.CORSOrigins = []string{"https://app.example", "https://*.corp.example"} })
	base := "http://" + srv.Addr("http")
	status, _, resp := webDo(t, "OPTIONS", base+"/v1/pub/a", preflight)
	h := resp.Header
	if status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "authorization") ||
		h.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight: %d %v", status, h)
	}
	preflight["Origin"] = "https://ops.corp.example"
	if _, _, resp := webDo(t, "OPTIONS", base+"/v1/pub/a", preflight); resp.Header.Get("Access-Control-Allow-Origin") != "https://ops.corp.example" {
		t.Fatalf("wildcard origin: %v", resp.Header)
	}
	preflight["Origin"] = "https://evil.example"
	if _, _, resp := webDo(t, "OPTIONS", base+"/v1/pub/a", preflight); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("an unlisted origin was allowed: %v", resp.Header)
	}

	// A real request and an SSE stream from the listed origin.
	req, _ := http.NewRequest("POST", base+"/v1/pub/a", strings.NewReader("x"))
	req.Header.Set("Origin", "https://app.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("publish from the origin: %d %v", resp.StatusCode, resp.Header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", base+"/v1/sub/a", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Accept", "text/event-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE from the origin: %v", resp.Header)
	}
}

// TestMetricsRequireAuth: with metrics.require_auth, /metrics needs admin:metrics.
func TestMetricsRequireAuth(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.Metrics.RequireAuth = true })
	for name, grants := range map[string][]string{"scraper": {"admin:metrics"}, "dev": {"publish:#"}} {
		var gs []auth.Grant
		for _, s := range grants {
			g, _ := auth.ParseGrant(s)
			gs = append(gs, g)
		}
		if err := srv.Auth.PutUser(auth.User{Name: name, Grants: gs}, []byte(name+"pw")); err != nil {
			t.Fatal(err)
		}
	}
	url := "http://" + srv.Addr("http") + "/metrics"
	basic := func(u string) map[string]string {
		req, _ := http.NewRequest("GET", url, nil)
		req.SetBasicAuth(u, u+"pw")
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}
	if status, _, _ := webDo(t, "GET", url, nil); status != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", status)
	}
	if status, _, _ := webDo(t, "GET", url, basic("dev")); status != http.StatusForbidden {
		t.Fatalf("without admin:metrics: %d", status)
	}
	if status, body, _ := webDo(t, "GET", url, basic("scraper")); status != http.StatusOK || !strings.Contains(body, "tern_messages_received_total") {
		t.Fatalf("with admin:metrics: %d", status)
	}
	// Off (the default), /metrics is open.
	open := startServer(t)
	if status, _, _ := webDo(t, "GET", "http://"+open.Addr("http")+"/metrics", nil); status != http.StatusOK {
		t.Fatalf("default: %d", status)
	}
}

// TestFaceMetrics: HTTP streams, WebSocket clients, mBus and webhooks are exported.
func TestFaceMetrics(t *testing.T) {
	srv := startServer(t)
	base := "http://" + srv.Addr("http")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+srv.Addr("http")+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/sub/m", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	eventually(t, waitTimeout, "the stream and the WebSocket to be counted", func() bool {
		_, body, _ := webDo(t, "GET", base+"/metrics", nil)
		return strings.Contains(body, "\ntern_http_streams 1\n") && strings.Contains(body, `tern_websocket_clients{endpoint="mqtt"} 1`)
	})
	_, body, _ := webDo(t, "GET", base+"/metrics", nil)
	for _, name := range []string{"tern_http_published_total", "tern_http_requests_total", `tern_websocket_clients{endpoint="api"} 0`,
		"tern_mbus_connections_open", "tern_mbus_connections_accepted_total", "tern_webhook_attempts_total",
		"tern_webhook_failures_total", "tern_webhook_dead_letters_total", "tern_webhook_delivered_total"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("%s not exported", name)
		}
	}
}

// TestGrafanaDashboardMetrics: docs/grafana-dashboard.json is JSON, and every metric its
// queries use is one tern exports.
func TestGrafanaDashboardMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	srv := startServer(t, func(c *config.Config) { c.Webhooks.AllowPrivate = true })
	// A webhook's lag is exported per hook, so there is one.
	if _, err := srv.Webhooks.Create(auth.Unrestricted("ops"), webhook.Hook{Filter: "x/#", URL: "http://127.0.0.1:9/"}); err != nil {
		t.Fatal(err)
	}
	_, exported, _ := webDo(t, "GET", "http://"+srv.Addr("http")+"/metrics", nil)
	names := regexp.MustCompile(`\b((?:tern|process|go)_[a-z_]+)\b`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range names.FindAllStringSubmatch(tg.Expr, -1) {
				n++
				if !strings.Contains(exported, "\n# HELP "+m[1]+" ") {
					t.Errorf("the dashboard uses %s, which tern does not export", m[1])
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d metrics found in the dashboard's queries", n)
	}
}
