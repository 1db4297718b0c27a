package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
)

// startWithUsers runs tern with authentication on: root may do everything, dev may use
// devices/#; both log in with a password.
func startWithUsers(t *testing.T) *server.Server {
	t.Helper()
	srv := servertest.Start(t, func(c *config.Config) {
		// Webhooks to the test's own endpoint on loopback, and a retry that waits for the
		// page's "Retry now".
		c.Webhooks.AllowPrivate = true
		c.Webhooks.BackoffBase, c.Webhooks.BackoffMax = time.Hour, time.Hour
	})
	for _, u := range []struct {
		name, pw string
		grants   []string
	}{
		{"root", "rootpw", []string{"admin:#", "publish:#", "subscribe:#", "retain:#", "call:#"}},
		{"dev", "devpw", []string{"publish:devices/#", "subscribe:devices/#"}},
	} {
		var gs []auth.Grant
		for _, s := range u.grants {
			g, err := auth.ParseGrant(s)
			if err != nil {
				t.Fatal(err)
			}
			gs = append(gs, g)
		}
		if err := srv.Auth.PutUser(auth.User{Name: u.name, Grants: gs}, []byte(u.pw)); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

func (b *browser) login(user, pw string) {
	b.t.Helper()
	b.run(chromedp.Navigate(b.base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-user")),
		chromedp.SendKeys(chromedp.CSS("#login-user"), user),
		chromedp.SendKeys(chromedp.CSS("#login-password"), pw),
		chromedp.Click(chromedp.CSS("#login-submit")))
	b.waitText("#whoami", user)
}

// TestConsoleInBrowser walks through the console as a person would, with MQTT clients beside it.
func TestConsoleInBrowser(t *testing.T) {
	srv := startWithUsers(t)
	base := "http://" + srv.Addr("http")
	mqttAddr := srv.Addr("mqtt")
	b := newBrowser(t, base)

	// Log in: a wrong password is refused on the page, the right one opens the overview.
	b.run(chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#login-user")))
	b.shot("login")
	b.run(chromedp.SendKeys(chromedp.CSS("#login-user"), "root"), chromedp.SendKeys(chromedp.CSS("#login-password"), "nope"),
		chromedp.Click(chromedp.CSS("#login-submit")))
	b.waitText("main.login .notice", "Wrong user name, password or token")
	b.login("root", "rootpw")
	if cookies := eval[string](b, `document.cookie`); cookies != "" {
		t.Fatalf("the session cookie is readable by scripts: %q", cookies)
	}

	// A client to watch, kick and look at.
	watcher, _, err := dialMQTT(t, mqttAddr, "watcher", "root", "rootpw")
	if err != nil {
		t.Fatal(err)
	}
	watcher.subscribe(t, "form/#", 1)

	b.waitText("#tiles", "Connected")
	b.waitText("#faces", "mqtt")
	watcher.publish(t, "demo/warmup", "x", 0, false) // something to draw
	b.run(chromedp.WaitReady(chromedp.CSS("#rate-chart polyline.in")))
	b.shot("overview")

	// Live tail: a message published over MQTT appears.
	b.goTo("topics", "Topics")
	b.run(chromedp.SetValue(chromedp.CSS("#tail-filter"), "#"), chromedp.Click(chromedp.CSS("#tail-start")))
	b.waitText("#tail-status", "Tailing #")
	watcher.publish(t, "demo/kitchen/temp", "21.5 degrees from mqtt", 0, false)
	b.waitText("#tail-rows", "21.5 degrees from mqtt")
	b.waitText("#tail-rows", "demo/kitchen/temp")

	// A hostile topic and payload show as text: no element is made from them, nothing runs.
	const xssTopic = `xss/<img src=x onerror="window.__xss=1">`
	const xssPayload = `<script>window.__xss=2</script><img src=x onerror="window.__xss=3">`
	watcher.publish(t, xssTopic, xssPayload, 1, true)
	b.waitText("#tail-rows", xssPayload)
	b.waitText("#tail-rows", xssTopic)
	b.run(chromedp.Click(chromedp.CSS("#retained-load")))
	b.waitText("#retained-tree", xssPayload)
	b.waitText("#retained-tree", `<img src=x onerror="window.__xss=1">`)
	if injected := eval[int](b, `document.querySelectorAll('#content img, #content script').length + (window.__xss === undefined ? 0 : 100)`); injected != 0 {
		t.Fatalf("the payload became markup or ran (%d)", injected)
	}

	// Publish from the form with QoS 1 and properties; the MQTT client receives it.
	b.run(chromedp.SetValue(chromedp.CSS("#pub-topic"), "form/lamp"),
		chromedp.SetValue(chromedp.CSS("#pub-payload"), "on from the console"),
		chromedp.SetValue(chromedp.CSS("#pub-qos"), "1"),
		chromedp.Click(chromedp.CSS("details summary")),
		chromedp.SetValue(chromedp.CSS("#pub-content-type"), "text/plain"),
		chromedp.SetValue(chromedp.CSS("#pub-props"), "room=kitchen"),
		chromedp.Click(chromedp.CSS("#pub-submit")))
	b.waitText("#pub-status", "Published to form/lamp")
	got := watcher.next(t)
	if got.Topic != "form/lamp" || string(got.Payload) != "on from the console" || got.QoS != 1 ||
		got.Properties == nil || got.Properties.ContentType != "text/plain" || got.Properties.User.Get("room") != "kitchen" {
		t.Fatalf("received %s %q qos %d props %+v", got.Topic, got.Payload, got.QoS, got.Properties)
	}
	b.shot("topics")

	// Sessions: find the client, open it, disconnect it; it is told why (MQTT 5: 0x98).
	victim, _, err := dialMQTT(t, mqttAddr, "victim-1", "dev", "devpw")
	if err != nil {
		t.Fatal(err)
	}
	victim.subscribe(t, "devices/victim-1/#", 1)
	b.goTo("sessions", "Sessions")
	b.waitText("#session-list", "victim-1")
	b.run(chromedp.SendKeys(chromedp.CSS("#session-search"), "victim"))
	b.waitText("#session-count", "1 session.")
	b.shot("sessions")
	b.goTo("sessions/victim-1", "Sessions")
	b.waitText("#session-detail", "devices/victim-1/#")
	b.shot("session-detail")
	b.clickTwice("#kick")
	b.waitText("#session-status", "The client was disconnected")
	select {
	case d := <-victim.disc:
		if d.ReasonCode != 0x98 {
			t.Fatalf("disconnected with reason %#x, want 0x98 (administrative action)", d.ReasonCode)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the kicked client was not disconnected")
	}

	// Tokens: one works until it is revoked on the page; then its client is refused.
	secret, info, err := srv.Auth.CreateToken("dev", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dialMQTT(t, mqttAddr, "with-token", "", secret); err != nil {
		t.Fatalf("the token does not work before it is revoked: %v", err)
	}
	b.goTo("access", "Users & access")
	b.waitText("#token-list", info.ID)
	b.waitText("#user-list", "dev")
	b.shot("access")
	b.clickTwice(`button[data-token="` + info.ID + `"]`)
	b.waitText("#access-status", "Revoked token "+info.ID)
	if _, ack, err := dialMQTT(t, mqttAddr, "with-token-2", "", secret); err == nil || ack == nil || ack.ReasonCode != 0x86 {
		t.Fatalf("a revoked token's client: %v (connack %+v), want bad user name or password", err, ack)
	}
	req, _ := http.NewRequest("GET", base+"/v1/retained/devices/%23", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a revoked token over HTTP: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Webhooks: one created on the page fails its first attempt; the page shows the failure,
	// and "Retry now" delivers without waiting out the hour's backoff.
	hits := make(chan string, 10)
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Tern-Attempt") == "1" {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		hits <- string(body)
	}))
	defer endpoint.Close()
	b.goTo("webhooks", "Webhooks")
	b.waitText("#webhook-list", "No webhooks")
	b.run(chromedp.SetValue(chromedp.CSS("#hook-filter"), "orders/#"), chromedp.SetValue(chromedp.CSS("#hook-url"), endpoint.URL+"/hook"),
		chromedp.Click(chromedp.CSS("#hook-form button[type=submit]")))
	b.waitText("#webhook-list", "orders/#")
	watcher.publish(t, "orders/42", `{"order":42}`, 1, false)
	b.waitText("#webhook-list", "503 Service Unavailable")
	b.waitText("#webhook-list", "retrying")
	b.shot("webhooks")
	b.run(chromedp.Click(chromedp.CSS("#webhook-list button.retry")))
	select {
	case got := <-hits:
		if got != `{"order":42}` {
			t.Fatalf("the endpoint received %q", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Retry now did not deliver")
	}
	b.waitText("#webhook-list", "1 delivered")

	// The other pages render.
	for _, p := range []struct{ hash, heading, wait, want string }{
		{"services", "Services", "#service-list", "No client serves"},
		{"mailbox", "Mailbox", "#mbox-front", "empty"},
	} {
		b.goTo(p.hash, p.heading)
		b.waitText(p.wait, p.want)
		b.shot(p.hash)
	}

	// Logging out ends the session on the server too.
	b.run(chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-user")))
	if status := eval[int](b, `fetch('/v1/stats', {headers: {'X-Requested-With': 'tern-console'}}).then(r => r.status)`); status != http.StatusUnauthorized {
		t.Fatalf("the API after logging out: %d", status)
	}

	// The pages broke no rule of their Content-Security-Policy and threw nothing. API answers
	// the pages handle are logged by the browser too, and expected: 401 for the wrong password
	// and after logging out, 404 for the kicked client's ended session and the empty mailbox.
	if p := b.problems(func(e string) bool {
		return strings.HasPrefix(e, "log (network)") && (strings.Contains(e, "401 (Unauthorized)") || strings.Contains(e, "404 (Not Found)"))
	}); len(p) > 0 {
		t.Fatalf("the pages reported problems: %q", p)
	}
}

// TestConsoleOpenModeInBrowser: with nothing configured the console needs no login and says on
// every page that anybody may do everything.
func TestConsoleOpenModeInBrowser(t *testing.T) {
	srv := servertest.Start(t)
	b := newBrowser(t, "http://"+srv.Addr("http"))
	for _, p := range []struct{ hash, heading string }{{"overview", "Overview"}, {"topics", "Topics"}, {"access", "Users & access"}} {
		b.goTo(p.hash, p.heading)
		b.waitText("#open-mode", "Open mode")
	}
	b.shot("open-mode-access")
	b.goTo("overview", "Overview")
	b.waitText("#store", "open mode")
	b.shot("open-mode-overview")
	if p := b.problems(nil); len(p) > 0 {
		t.Fatalf("the pages reported problems: %q", p)
	}
}
