package console_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/console"
)

// hc is an HTTP client with a deadline; it keeps no cookies: each test sends them by hand, so
// what travels is explicit.
var hc = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

type call struct {
	method, path, body string
	header             map[string]string
}

// do makes the request and returns the status, the body and the response.
func do(t *testing.T, base string, c call) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// login logs in and returns the cookie header and the CSRF token.
func login(t *testing.T, base, body string) (string, string) {
	t.Helper()
	status, b, resp := do(t, base, call{method: "POST", path: "/console/api/login", body: body,
		header: map[string]string{"Content-Type": "application/json"}})
	if status != http.StatusOK {
		t.Fatalf("login %s: %d %s", body, status, b)
	}
	var info console.SessionInfo
	if err := json.Unmarshal([]byte(b), &info); err != nil || !info.LoggedIn || info.CSRF == "" {
		t.Fatalf("login answered %s: %v", b, err)
	}
	cks := resp.Cookies()
	if len(cks) != 1 || cks[0].Name != "tern_console" || !cks[0].HttpOnly || cks[0].SameSite != http.SameSiteStrictMode ||
		cks[0].Path != "/" || cks[0].Secure {
		t.Fatalf("session cookie %+v (raw %q)", cks, resp.Header.Values("Set-Cookie"))
	}
	return cks[0].Name + "=" + cks[0].Value, info.CSRF
}

func TestPagesHaveAStrictPolicy(t *testing.T) {
	srv := startWithUsers(t)
	base := "http://" + srv.Addr("http")
	for _, p := range []string{"/", "/console/assets/js/app.js", "/console/assets/style.css", "/console/assets/js/pages/topics.js"} {
		status, body, resp := do(t, base, call{method: "GET", path: p})
		csp := resp.Header.Get("Content-Security-Policy")
		if status != http.StatusOK || len(body) == 0 || !strings.Contains(csp, "script-src 'self'") ||
			!strings.Contains(csp, "style-src 'self'") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d, CSP %q, nosniff %q", p, status, csp, resp.Header.Get("X-Content-Type-Options"))
		}
		if strings.HasSuffix(p, ".js") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
			t.Errorf("%s served as %q: a module script needs a JavaScript type", p, resp.Header.Get("Content-Type"))
		}
	}
	// No inline script or style for the policy to refuse, and no page builds markup from data.
	_, index, _ := do(t, base, call{method: "GET", path: "/"})
	if strings.Contains(index, "<style") || strings.Contains(index, "style=") || strings.Count(index, "<script") != 1 ||
		!strings.Contains(index, `<script type="module" src="/console/assets/js/app.js">`) {
		t.Errorf("index.html has inline code:\n%s", index)
	}
	for _, p := range []string{"app.js", "api.js", "dom.js", "chart.js", "pages/overview.js", "pages/sessions.js", "pages/topics.js",
		"pages/services.js", "pages/webhooks.js", "pages/mailbox.js", "pages/access.js"} {
		_, js, _ := do(t, base, call{method: "GET", path: "/console/assets/js/" + p})
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
			if strings.Contains(js, bad) {
				t.Errorf("%s uses %s", p, bad)
			}
		}
	}
}

func TestSessionCookieAndCSRF(t *testing.T) {
	srv := startWithUsers(t)
	base := "http://" + srv.Addr("http")
	json := map[string]string{"Content-Type": "application/json"}

	// A wrong password: 401 without a challenge (no browser dialog), and no cookie.
	status, _, resp := do(t, base, call{method: "POST", path: "/console/api/login", body: `{"username":"root","password":"x"}`, header: json})
	if status != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "" || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong password: %d, challenge %q, cookies %v", status, resp.Header.Get("WWW-Authenticate"), resp.Cookies())
	}
	// A login from another origin is refused before any password is checked.
	if status, _, _ := do(t, base, call{method: "POST", path: "/console/api/login", body: `{"username":"root","password":"rootpw"}`,
		header: map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}}); status != http.StatusForbidden {
		t.Fatalf("cross-origin login: %d", status)
	}

	cookie, csrf := login(t, base, `{"username":"root","password":"rootpw"}`)
	with := func(h map[string]string) map[string]string {
		out := map[string]string{"Cookie": cookie}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	// Reading needs the cookie only; the admin API and stats answer as for root.
	if status, b, _ := do(t, base, call{method: "GET", path: "/v1/stats", header: with(nil)}); status != http.StatusOK {
		t.Fatalf("stats with the cookie: %d %s", status, b)
	}
	if status, _, _ := do(t, base, call{method: "GET", path: "/v1/admin/users", header: with(nil)}); status != http.StatusOK {
		t.Fatalf("admin API with the cookie: %d", status)
	}
	// Changing needs the CSRF token too.
	for _, h := range []map[string]string{nil, {console.CSRFHeader: "wrong"}, {console.CSRFHeader: ""}} {
		if status, b, _ := do(t, base, call{method: "POST", path: "/v1/pub/a", body: "x", header: with(h)}); status != http.StatusForbidden ||
			!strings.Contains(b, `"csrf"`) {
			t.Fatalf("publish with the cookie and CSRF %v: %d %s", h, status, b)
		}
		if status, _, _ := do(t, base, call{method: "DELETE", path: "/v1/admin/users/dev", header: with(h)}); status != http.StatusForbidden {
			t.Fatalf("delete a user with the cookie and CSRF %v: %d", h, status)
		}
	}
	if status, b, _ := do(t, base, call{method: "POST", path: "/v1/pub/a", body: "x", header: with(map[string]string{console.CSRFHeader: csrf})}); status != http.StatusOK {
		t.Fatalf("publish with cookie and CSRF: %d %s", status, b)
	}
	// The cookie counts for nothing from another origin, nor on a WebSocket upgrade.
	for _, h := range []map[string]string{
		{"Origin": "http://evil.example", console.CSRFHeader: csrf},
		{"Sec-Fetch-Site": "cross-site", console.CSRFHeader: csrf},
		{"Sec-Fetch-Site": "same-site", console.CSRFHeader: csrf},
	} {
		if status, _, _ := do(t, base, call{method: "POST", path: "/v1/pub/a", body: "x", header: with(h)}); status != http.StatusUnauthorized {
			t.Fatalf("publish with the cookie from %v: %d", h, status)
		}
	}
	if status, _, _ := do(t, base, call{method: "GET", path: "/v1/stats", header: with(map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"})}); status != http.StatusUnauthorized {
		t.Fatalf("a WebSocket upgrade used the cookie: %d", status)
	}
	// A request of the console's own, without a session: no challenge.
	if _, _, resp := do(t, base, call{method: "GET", path: "/v1/stats", header: map[string]string{"X-Requested-With": "tern-console"}}); resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatal("the console's request got a challenge")
	}

	// Logging out needs the token too, and ends the session on the server.
	if status, _, _ := do(t, base, call{method: "POST", path: "/console/api/logout", header: with(nil)}); status != http.StatusForbidden {
		t.Fatalf("logout without CSRF: %d", status)
	}
	if status, _, _ := do(t, base, call{method: "POST", path: "/console/api/logout", header: with(map[string]string{console.CSRFHeader: csrf})}); status != http.StatusNoContent {
		t.Fatalf("logout: %d", status)
	}
	if status, b, resp := do(t, base, call{method: "GET", path: "/v1/stats", header: with(nil)}); status != http.StatusUnauthorized ||
		!strings.Contains(b, "session_expired") || resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("the old cookie after logout: %d %s", status, b)
	}
}

// TestTokenSessionEndsWithItsToken: a console session opened with a token presents it on each
// request, so revoking the token ends the session at once.
func TestTokenSessionEndsWithItsToken(t *testing.T) {
	srv := startWithUsers(t)
	base := "http://" + srv.Addr("http")
	secret, info, err := srv.Auth.CreateToken("root", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	cookie, _ := login(t, base, `{"token":"`+secret+`"}`)
	h := map[string]string{"Cookie": cookie}
	if status, _, _ := do(t, base, call{method: "GET", path: "/v1/stats", header: h}); status != http.StatusOK {
		t.Fatalf("with the token's session: %d", status)
	}
	if err := srv.Auth.RevokeToken(info.ID); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := do(t, base, call{method: "GET", path: "/v1/stats", header: h}); status != http.StatusUnauthorized {
		t.Fatalf("after the token was revoked: %d", status)
	}
	_, b, _ := do(t, base, call{method: "GET", path: "/console/api/session", header: h})
	if strings.Contains(b, `"logged_in":true`) {
		t.Fatalf("the session outlived its token: %s", b)
	}
}

// TestGrantsDecide: a console user sees and does what its grants allow, no more.
func TestGrantsDecide(t *testing.T) {
	srv := startWithUsers(t)
	base := "http://" + srv.Addr("http")
	cookie, csrf := login(t, base, `{"username":"dev","password":"devpw"}`)
	h := map[string]string{"Cookie": cookie, console.CSRFHeader: csrf}
	_, b, _ := do(t, base, call{method: "GET", path: "/console/api/session", header: h})
	var info console.SessionInfo
	if err := json.Unmarshal([]byte(b), &info); err != nil || info.Identity != "dev" || info.Admin["users"] || info.Admin["sessions"] {
		t.Fatalf("dev's session: %s", b)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/stats", http.StatusForbidden},
		{"GET", "/v1/admin/users", http.StatusForbidden},
		{"POST", "/v1/pub/devices/1", http.StatusOK},
		{"POST", "/v1/pub/other", http.StatusForbidden},
	} {
		if status, b, _ := do(t, base, call{method: c.method, path: c.path, body: "x", header: h}); status != c.want {
			t.Errorf("%s %s as dev: %d %s, want %d", c.method, c.path, status, b, c.want)
		}
	}
}
