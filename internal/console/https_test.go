package console_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server/servertest"
)

// TestConsoleOverHTTPSWithCertificate: on --https the session cookie is Secure with the __Host-
// prefix, a client certificate logs in without a password, and the session holds only for
// requests that bring that certificate.
func TestConsoleOverHTTPSWithCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := certs.CreateCA(ca, "test CA", 0); err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := certs.Issue(ca, filepath.Join(dir, "srv"), "server", certs.IssueOptions{Server: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	clientCert := func(name string) tls.Certificate {
		c, k, err := certs.Issue(ca, filepath.Join(dir, name), name, certs.IssueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	srv := servertest.Start(t, func(c *config.Config) {
		c.Listen.HTTPS = "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: filepath.Join(ca, certs.CACertFile)}
	})
	g, _ := auth.ParseGrant("admin:#")
	if err := srv.Auth.PutUser(auth.User{Name: "alice", Grants: []auth.Grant{g}}, nil); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(ca, certs.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := func(c tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{c}}}}
	}
	alice, bob := client(clientCert("Alice")), client(clientCert("bob"))
	base := "https://" + srv.Addr("https")
	send := func(hc *http.Client, method, path, body, cookie string) (int, string, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp
	}
	if _, b, _ := send(alice, "GET", "/console/api/session", "", ""); !strings.Contains(b, `"certificate":"alice"`) || strings.Contains(b, `"logged_in":true`) {
		t.Fatalf("before login: %s", b)
	}
	status, b, resp := send(alice, "POST", "/console/api/login", "{}", "")
	if status != http.StatusOK || !strings.Contains(b, `"method":"certificate"`) {
		t.Fatalf("certificate login: %d %s", status, b)
	}
	cks := resp.Cookies()
	if len(cks) != 1 || cks[0].Name != "__Host-tern" || !cks[0].Secure || !cks[0].HttpOnly || cks[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie over HTTPS: %v", resp.Header.Values("Set-Cookie"))
	}
	cookie := cks[0].Name + "=" + cks[0].Value
	if status, b, _ := send(alice, "GET", "/v1/admin/sessions", "", cookie); status != http.StatusOK {
		t.Fatalf("alice with her cookie: %d %s", status, b)
	}
	if status, b, _ := send(bob, "GET", "/v1/admin/sessions", "", cookie); status != http.StatusUnauthorized || !strings.Contains(b, "session_expired") {
		t.Fatalf("bob's certificate with alice's cookie: %d %s", status, b)
	}
}
