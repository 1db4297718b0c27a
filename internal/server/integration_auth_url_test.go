package server_test

// The external authorization URL through paho, beyond TestExternalAuthorizationURL: what the
// json-style request carries, the identity and grants of an answer, the answer's ttl, failing
// closed (slow, down, error statuses, malformed answers, none of them cached) and the bearer style.

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// fakeURL serves handler and counts requests per user name (json style) or per Authorization
// header (bearer style).
type fakeURL struct {
	srv *httptest.Server
	mu  sync.Mutex
	n   map[string]int
}

func newFakeURL(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, body map[string]any)) *fakeURL {
	t.Helper()
	f := &fakeURL{n: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(b, &body); err != nil {
				t.Errorf("request body %q: %v", b, err)
			}
		}
		key := r.Header.Get("Authorization")
		if u, ok := body["username"].(string); ok {
			key = u
		}
		f.mu.Lock()
		f.n[key]++
		f.mu.Unlock()
		handler(w, r, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeURL) requests(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[key]
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// TestAuthURLRequestAndAnswer: the json request carries user name, password (base64 when it is
// not UTF-8), client id, face and remote address; the answer's identity, not the user name, is
// the principal (%u, the sender), and its grants are all it may do.
func TestAuthURLRequestAndAnswer(t *testing.T) {
	bodies := make(chan map[string]any, 8)
	f := newFakeURL(t, func(w http.ResponseWriter, r *http.Request, b map[string]any) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		bodies <- b
		switch {
		case b["username"] == "dave" && b["password"] == "davepw":
			answer(w, map[string]any{"result": "allow", "identity": "dave-id", "ttl": 60,
				"grants": []map[string]string{{"action": "publish", "filter": "u/%u/#"}, {"action": "subscribe", "filter": "u/#"},
					{"action": "nonsense", "filter": "x"}}})
		case b["username"] == "bin" && b["password_base64"] == "//4A":
			answer(w, map[string]any{"result": "allow"})
		default:
			answer(w, map[string]any{"result": "deny"})
		}
	})
	srv := securedServer(t, func(c *config.Config) { c.Auth.URL = f.srv.URL + "/auth" })

	dave := loginV5(t, srv, "dave-1", "dave", "davepw")
	b := <-bodies
	if b["username"] != "dave" || b["password"] != "davepw" || b["client_id"] != "dave-1" || b["face"] != "mqtt" ||
		!strings.HasPrefix(b["remote_addr"].(string), "127.0.0.1:") {
		t.Fatalf("request body %v", b)
	}
	dave.sub("u/#", 1)
	if r := pubCode(t, dave, &paho.Publish{Topic: "u/dave-id/x", QoS: 1, Payload: []byte("mine")}); r >= 0x80 {
		t.Fatalf("publish under the answered identity: %#x", r)
	}
	if r := pubCode(t, dave, &paho.Publish{Topic: "u/dave/x", QoS: 1, Payload: []byte("by user name")}); r != notAuthorized {
		t.Fatalf("%%u was the user name, not the answered identity: %#x", r)
	}
	if r := pubCode(t, dave, &paho.Publish{Topic: "users/dave/x", QoS: 1, Payload: []byte("x")}); r != notAuthorized {
		t.Fatalf("outside the answered grants: %#x", r)
	}
	if m := dave.expect("u/dave-id/x", "mine"); m.Properties.User.Get(message.SenderProperty) != "dave-id" {
		t.Fatalf("sender %q, want the answered identity", m.Properties.User.Get(message.SenderProperty))
	}

	// A password that is not UTF-8 goes as password_base64; an answer without identity names
	// the client by its user name.
	connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "bin-1", CleanStart: true,
		Username: "bin", UsernameFlag: true, Password: []byte{0xff, 0xfe, 0x00}, PasswordFlag: true})
	if b := <-bodies; b["password"] != nil || b["password_base64"] != "//4A" {
		t.Fatalf("binary password sent as %v", b)
	}
	if f.requests("bin") != 1 || f.requests("dave") != 1 {
		t.Fatalf("requests: dave %d bin %d", f.requests("dave"), f.requests("bin"))
	}
}

// TestAuthURLDecisionTTL: a decision is reused for the ttl its answer gives and asked again
// after it, never before; a ttl of 0 is not cached at all.
func TestAuthURLDecisionTTL(t *testing.T) {
	f := newFakeURL(t, func(w http.ResponseWriter, _ *http.Request, b map[string]any) {
		ttl := 1
		if b["username"] == "nocache" {
			ttl = 0
		}
		answer(w, map[string]any{"result": "allow", "ttl": ttl})
	})
	srv := securedServer(t, func(c *config.Config) { c.Auth.URL = f.srv.URL })

	for i := 1; i <= 2; i++ {
		if got := rawConnack(t, srv, packet.V5, "nc", "nocache", "pw", nil); got != packet.Success {
			t.Fatalf("ttl 0, connect %d: %v", i, got)
		}
		if n := f.requests("nocache"); n != i {
			t.Fatalf("ttl 0: %d requests after %d connects", n, i)
		}
	}

	start := time.Now()
	for i := 0; i < 2; i++ {
		if got := rawConnack(t, srv, packet.V5, "ttl", "ttl", "pw", nil); got != packet.Success {
			t.Fatalf("connect %d: %v", i, got)
		}
	}
	if n := f.requests("ttl"); n != 1 {
		t.Fatalf("%d requests for two connects within the ttl", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.requests("ttl") == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the decision was still reused 10 s after its 1 s ttl")
		}
		if got := rawConnack(t, srv, packet.V5, "ttl", "ttl", "pw", nil); got != packet.Success {
			t.Fatalf("polling connect: %v", got)
		}
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("asked again after %v, before the 1 s ttl ran out", took)
	}
	if hits := srv.Auth.Stats().URLCacheHits.Load(); hits == 0 {
		t.Fatal("no cache hit counted")
	}
}

// TestAuthURLSlowFailsPromptly: a URL that does not answer within url_timeout refuses the client
// with 0x88 (3.1.1: 3) soon after the timeout, while the handler is still blocked; the failure is
// not cached.
func TestAuthURLSlowFailsPromptly(t *testing.T) {
	release := make(chan struct{})
	var returned atomic.Bool
	f := newFakeURL(t, func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		<-release // ignores the request's context: only the test ends the wait
		returned.Store(true)
		answer(w, map[string]any{"result": "allow"})
	})
	t.Cleanup(func() { close(release) }) // runs before f.srv.Close, which waits for handlers
	srv := securedServer(t, func(c *config.Config) {
		c.Auth.URL = f.srv.URL
		c.Auth.URLTimeout = 200 * time.Millisecond
	})
	for i := 1; i <= 2; i++ {
		start := time.Now()
		if got := rawConnack(t, srv, packet.V5, "slow", "slow", "pw", nil); got != packet.ServerUnavailable {
			t.Fatalf("slow URL, attempt %d: %v", i, got)
		}
		// Promptly: before the handler returned (checked below), and not before the timeout.
		if took := time.Since(start); took < 150*time.Millisecond {
			t.Fatalf("refused after %v with a 200 ms url_timeout", took)
		}
		if n := f.requests("slow"); n != i {
			t.Fatalf("attempt %d: %d requests (a failure must not be cached)", i, n)
		}
	}
	if got := rawConnack(t, srv, packet.V311, "slow3", "slow", "pw", nil); got != packet.V3RefusedServerUnavailable {
		t.Fatalf("3.1.1, slow URL: %d", got)
	}
	if returned.Load() {
		t.Fatal("the handler returned: the test proved nothing about promptness")
	}
	if n := srv.Auth.Stats().Unavailable.Load(); n != 3 {
		t.Fatalf("unavailable counter %d, want 3", n)
	}
}

// TestAuthURLFailsClosed: error statuses, redirects, malformed or unknown answers and a closed
// port refuse with 0x88 and are asked again next time; 401 and 403 are denials (0x86).
func TestAuthURLFailsClosed(t *testing.T) {
	f := newFakeURL(t, func(w http.ResponseWriter, r *http.Request, b map[string]any) {
		switch b["username"] {
		case "e500":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "garbage":
			_, _ = io.WriteString(w, "{not json")
		case "maybe":
			answer(w, map[string]any{"result": "maybe"})
		case "e401":
			w.WriteHeader(http.StatusUnauthorized)
		case "e403":
			w.WriteHeader(http.StatusForbidden)
		default:
			answer(w, map[string]any{"result": "allow"})
		}
	})
	srv := securedServer(t, func(c *config.Config) {
		c.Auth.URL = f.srv.URL
		c.Auth.BackoffFailures = -1 // the denials would otherwise start a back-off for 127.0.0.1
	})
	for _, c := range []struct {
		user string
		want packet.ReasonCode
		v3   packet.ReasonCode
	}{
		{"e500", packet.ServerUnavailable, packet.V3RefusedServerUnavailable},
		{"redirect", packet.ServerUnavailable, packet.V3RefusedServerUnavailable},
		{"garbage", packet.ServerUnavailable, packet.V3RefusedServerUnavailable},
		{"maybe", packet.ServerUnavailable, packet.V3RefusedServerUnavailable},
		{"e401", packet.BadUsernameOrPassword, packet.V3RefusedBadUsernameOrPassword},
		{"e403", packet.BadUsernameOrPassword, packet.V3RefusedBadUsernameOrPassword},
	} {
		for i := 1; i <= 2; i++ {
			if got := rawConnack(t, srv, packet.V5, "fc-"+c.user, c.user, "pw", nil); got != c.want {
				t.Errorf("%s, attempt %d: CONNACK %v, want %v", c.user, i, got, c.want)
			}
		}
		if got := rawConnack(t, srv, packet.V311, "fc3-"+c.user, c.user, "pw", nil); got != c.v3 {
			t.Errorf("%s, 3.1.1: CONNACK %d, want %d", c.user, got, c.v3)
		}
		want := 3 // two v5 attempts and one 3.1.1, none of them answered from a cache
		if c.want == packet.BadUsernameOrPassword {
			want = 2 // a denial is cached: the second v5 attempt was not asked again
		}
		if n := f.requests(c.user); n != want {
			t.Errorf("%s: %d requests, want %d", c.user, n, want)
		}
	}
	st := srv.Auth.Stats()
	if st.Unavailable.Load() != 12 || st.URLDenied.Load() != 6 {
		t.Fatalf("unavailable %d denied %d, want 12 and 6", st.Unavailable.Load(), st.URLDenied.Load())
	}

	// A closed port: nothing listens where the URL points.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	down := securedServer(t, func(c *config.Config) { c.Auth.URL = "http://" + addr + "/auth" })
	if got := rawConnack(t, down, packet.V5, "d", "dave", "pw", nil); got != packet.ServerUnavailable {
		t.Fatalf("URL down: %v", got)
	}
	if n := down.Auth.Stats().Unavailable.Load(); n != 1 {
		t.Fatalf("URL down: unavailable counter %d", n)
	}
}

// TestBearerURLContract: the bearer style sends GET with "Authorization: Bearer <token>" for
// MQTT 5 (empty user name) and 3.1.1 (user name "token"); 2xx admits with url_bearer_grants only,
// under an identity that does not reveal the token; 401 refuses (0x86), 500 fails closed (0x88);
// a user name and password never reach the URL.
func TestBearerURLContract(t *testing.T) {
	f := newFakeURL(t, func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		if r.Method != http.MethodGet {
			t.Errorf("bearer request method %s", r.Method)
		}
		switch r.Header.Get("Authorization") {
		case "Bearer good-token":
			w.WriteHeader(http.StatusNoContent)
		case "Bearer boom-token":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	srv := startServer(t, func(c *config.Config) {
		c.Auth.URL, c.Auth.URLStyle = f.srv.URL, "bearer"
		c.Auth.URLBearerGrants = []string{"subscribe:feeds/#", "publish:feeds/in"}
	})
	must(t, srv.Auth.PutUser(auth.User{Name: "carol", Grants: grants(t, "subscribe:feeds/#")}, []byte("carolpw")))

	v := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "b1", CleanStart: true, Password: []byte("good-token"), PasswordFlag: true})
	if f.requests("Bearer good-token") != 1 {
		t.Fatalf("the token was not forwarded as a bearer header: %v", f.n)
	}
	if codes := subCodes(t, v, paho.SubscribeOptions{Topic: "feeds/#", QoS: 1}, paho.SubscribeOptions{Topic: "other/#", QoS: 1}); codes[0] != 1 || codes[1] != notAuthorized {
		t.Fatalf("bearer grants: SUBACK %v", codes)
	}
	if r := pubCode(t, v, &paho.Publish{Topic: "feeds/other", QoS: 1, Payload: []byte("x")}); r != notAuthorized {
		t.Fatalf("publish outside the bearer grants: %#x", r)
	}
	if r := pubCode(t, v, &paho.Publish{Topic: "feeds/in", QoS: 1, Payload: []byte("in")}); r >= 0x80 {
		t.Fatalf("publish within the bearer grants: %#x", r)
	}
	m := v.expect("feeds/in", "in")
	if s := m.Properties.User.Get(message.SenderProperty); !strings.HasPrefix(s, "bearer-") || strings.Contains(s, "good-token") {
		t.Fatalf("bearer sender %q", s)
	}
	if got := rawConnack(t, srv, packet.V311, "b3", "token", "good-token", nil); got != packet.Success {
		t.Fatalf("3.1.1 with user name token: %d", got)
	}
	if got := rawConnack(t, srv, packet.V5, "b4", "", "bad-token", nil); got != packet.BadUsernameOrPassword {
		t.Fatalf("401 from the URL: %v", got)
	}
	if got := rawConnack(t, srv, packet.V311, "b5", "token", "bad-token", nil); got != packet.V3RefusedBadUsernameOrPassword {
		t.Fatalf("3.1.1, 401 from the URL: %d", got)
	}
	if got := rawConnack(t, srv, packet.V5, "b6", "", "boom-token", nil); got != packet.ServerUnavailable {
		t.Fatalf("500 from the URL: %v", got)
	}
	before := f.requests("")
	if got := rawConnack(t, srv, packet.V5, "c1", "carol", "carolpw", nil); got != packet.Success {
		t.Fatalf("a local user beside a bearer URL: %v", got)
	}
	if got := rawConnack(t, srv, packet.V5, "c2", "carol", "wrong", nil); got != packet.BadUsernameOrPassword {
		t.Fatalf("a local user's wrong password: %v", got)
	}
	if f.requests("") != before || f.requests("Bearer carolpw") != 0 || f.requests("Bearer wrong") != 0 {
		t.Fatalf("a user name and password reached the bearer URL: %v", f.n)
	}
}
