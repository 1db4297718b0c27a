package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
)

// rawConnack sends one CONNECT and returns the CONNACK's reason code.
func rawConnack(t *testing.T, srv *server.Server, v packet.Version, id, user, pw string, will *packet.Connect) packet.ReasonCode {
	t.Helper()
	r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), v)
	c := &packet.Connect{Version: v, CleanStart: true, KeepAlive: 30, ClientID: []byte(id)}
	if will != nil {
		*c = *will
		c.Version, c.ClientID, c.KeepAlive = v, []byte(id), 30
	}
	if user != "" || (pw != "" && v == packet.V5) {
		c.HasUsername, c.Username = true, []byte(user)
	}
	if pw != "" {
		c.HasPassword, c.Password = true, []byte(pw)
	}
	r.send(c)
	return expectConnack(r).Reason
}

func grants(t *testing.T, ss ...string) []auth.Grant {
	t.Helper()
	out, err := config.ParseGrants(ss)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// securedServer starts tern with users alice (her own subtree) and root (everything), so
// authentication is on.
func securedServer(t *testing.T, opts ...func(*config.Config)) *server.Server {
	t.Helper()
	return securedServerOn(t, nil, opts...)
}

// securedServerOn is securedServer with the server's options (a fake clock).
func securedServerOn(t *testing.T, sopts []server.Option, opts ...func(*config.Config)) *server.Server {
	t.Helper()
	srv := servertest.StartWith(t, sopts, opts...)
	a := srv.Auth
	for _, u := range []struct {
		name, pw string
		grants   []string
	}{
		{"alice", "alicepw", []string{"publish:users/%u/#", "subscribe:users/%u/#", "subscribe:public/#", "publish:c/%c/#"}},
		{"bob", "bobpw", []string{"publish:users/%u/#", "subscribe:users/#", "subscribe:public/#", "retain:users/%u/#"}},
	} {
		if err := a.PutUser(auth.User{Name: u.name, Grants: grants(t, u.grants...)}, []byte(u.pw)); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

// pubCode publishes and returns the PUBACK reason code, refusals included.
func pubCode(t *testing.T, v *v5Client, p *paho.Publish) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	r, err := v.c.Publish(ctx, p)
	if r == nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
	return r.ReasonCode
}

// subCodes subscribes and returns the SUBACK reason codes, refusals included.
func subCodes(t *testing.T, v *v5Client, opts ...paho.SubscribeOptions) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ack, err := v.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if ack == nil {
		t.Fatalf("subscribe: %v", err)
	}
	return ack.Reasons
}

func loginV5(t *testing.T, srv *server.Server, id, user, pw string) *v5Client {
	t.Helper()
	return connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: id, CleanStart: true,
		Username: user, UsernameFlag: true, Password: []byte(pw), PasswordFlag: pw != ""})
}

func TestPasswordsAndCredentialsRefused(t *testing.T) {
	srv := securedServer(t)
	for _, c := range []struct {
		name, user, pw string
		v5, v3         packet.ReasonCode
	}{
		{"wrong password", "alice", "nope", packet.BadUsernameOrPassword, packet.V3RefusedBadUsernameOrPassword},
		{"unknown user", "mallory", "x", packet.BadUsernameOrPassword, packet.V3RefusedBadUsernameOrPassword},
		{"no credentials", "", "", packet.NotAuthorized, packet.V3RefusedNotAuthorized},
		{"right password", "alice", "alicepw", packet.Success, packet.Success},
	} {
		if got := rawConnack(t, srv, packet.V5, "c5", c.user, c.pw, nil); got != c.v5 {
			t.Errorf("%s, MQTT 5: CONNACK %v, want %v", c.name, got, c.v5)
		}
		if got := rawConnack(t, srv, packet.V311, "c3", c.user, c.pw, nil); got != c.v3 {
			t.Errorf("%s, 3.1.1: CONNACK %d, want %d", c.name, got, c.v3)
		}
	}
	st := srv.Auth.Stats()
	if st.WrongPassword.Load() != 2 || st.UnknownUser.Load() != 2 || st.AnonymousRefused.Load() != 2 {
		t.Fatalf("counters: wrong %d unknown %d anonymous %d", st.WrongPassword.Load(), st.UnknownUser.Load(), st.AnonymousRefused.Load())
	}
}

func TestBackoffAfterRepeatedFailures(t *testing.T) {
	// On a fake clock the back-off lasts however long the test takes.
	clk := clock.NewFake(time.Now())
	srv := securedServerOn(t, []server.Option{server.WithClock(clk)},
		func(c *config.Config) { c.Auth.BackoffFailures = 3; c.Auth.BackoffMax = time.Minute })
	for i := 0; i < 3; i++ {
		if got := rawConnack(t, srv, packet.V5, "g", "alice", "guess", nil); got != packet.BadUsernameOrPassword {
			t.Fatalf("guess %d: %v", i, got)
		}
	}
	// Now even the right password waits: nothing is checked while the address is backing off.
	if got := rawConnack(t, srv, packet.V5, "g", "alice", "alicepw", nil); got != packet.ConnectionRateExceeded {
		t.Fatalf("right password during back-off: %v", got)
	}
	if got := rawConnack(t, srv, packet.V311, "g", "alice", "alicepw", nil); got != packet.V3RefusedServerUnavailable {
		t.Fatalf("3.1.1 during back-off: %d", got)
	}
	if srv.Auth.Stats().Backoff.Load() != 2 {
		t.Fatalf("back-off counter %d", srv.Auth.Stats().Backoff.Load())
	}
}

func TestTokens(t *testing.T) {
	srv := securedServer(t)
	a := srv.Auth
	tok, _, err := a.CreateToken("alice", grants(t, "subscribe:users/alice/#"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, _ := a.CreateToken("alice", nil, time.Nanosecond)
	revoked, rinfo, _ := a.CreateToken("alice", nil, 0)
	if err := a.RevokeToken(rinfo.ID); err != nil {
		t.Fatal(err)
	}
	if got := rawConnack(t, srv, packet.V5, "t1", "", tok, nil); got != packet.Success {
		t.Fatalf("token with an empty user name: %v", got)
	}
	if got := rawConnack(t, srv, packet.V311, "t2", "token", tok, nil); got != packet.Success {
		t.Fatalf("3.1.1 token with user name token: %d", got)
	}
	for name, s := range map[string]string{"expired": expired, "revoked": revoked, "forged": tok[:len(tok)-2] + "xx"} {
		if got := rawConnack(t, srv, packet.V5, "t3", "", s, nil); got != packet.BadUsernameOrPassword {
			t.Errorf("%s token: %v", name, got)
		}
	}
	// The token's grants, narrower than alice's, are what count.
	v := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "t4", CleanStart: true, Password: []byte(tok), PasswordFlag: true})
	if r := pubCode(t, v, &paho.Publish{Topic: "users/alice/x", QoS: 1, Payload: []byte("x")}); r != byte(packet.NotAuthorized) {
		t.Fatalf("publish with a subscribe-only token: %#x", r)
	}
	if codes := subCodes(t, v, paho.SubscribeOptions{Topic: "users/alice/#"}); codes[0] != 0 {
		t.Fatalf("subscribe with the token: %#x", codes[0])
	}
}

func TestTokenExpiryDisconnects(t *testing.T) {
	srv := securedServer(t)
	tok, _, err := srv.Auth.CreateToken("alice", nil, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	v := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "exp", CleanStart: true, Password: []byte(tok), PasswordFlag: true})
	select {
	case d := <-v.disc:
		if d.ReasonCode != byte(packet.NotAuthorized) {
			t.Fatalf("DISCONNECT %#x, want not authorized", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not disconnected when the token expired")
	}
}

func TestGrantsRefuseWithReasonCodes(t *testing.T) {
	srv := securedServer(t)
	alice := loginV5(t, srv, "alice-1", "alice", "alicepw")
	bob := loginV5(t, srv, "bob-1", "bob", "bobpw")
	bob.sub("users/#", 1)

	// SUBSCRIBE with mixed filters: only the refused one gets 0x87.
	codes := subCodes(t, alice, paho.SubscribeOptions{Topic: "users/alice/#", QoS: 1}, paho.SubscribeOptions{Topic: "users/#", QoS: 1},
		paho.SubscribeOptions{Topic: "public/news", QoS: 1})
	if len(codes) != 3 || codes[0] != 1 || codes[1] != byte(packet.NotAuthorized) || codes[2] != 1 {
		t.Fatalf("SUBACK reasons %v", codes)
	}
	v3 := connectV3(t, "tcp://"+srv.Addr("mqtt"), "alice-3", func(o *mqtt3.ClientOptions) { o.SetUsername("alice").SetPassword("alicepw") })
	tok := v3.c.SubscribeMultiple(map[string]byte{"users/alice/#": 1, "users/bob/#": 1}, nil)
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatal("3.1.1 subscribe timed out")
	}
	if res := tok.(*mqtt3.SubscribeToken).Result(); res["users/alice/#"] != 1 || res["users/bob/#"] != 0x80 {
		t.Fatalf("3.1.1 SUBACK %v", res)
	}

	// PUBLISH outside the grants, and RETAIN without a retain grant.
	if r := pubCode(t, alice, &paho.Publish{Topic: "users/bob/x", QoS: 1, Payload: []byte("forged")}); r != byte(packet.NotAuthorized) {
		t.Fatalf("publish outside grants: %#x", r)
	}
	if r := pubCode(t, alice, &paho.Publish{Topic: "users/alice/s", QoS: 1, Retain: true, Payload: []byte("r")}); r != byte(packet.NotAuthorized) {
		t.Fatalf("retain without grant: %#x", r)
	}
	if r := pubCode(t, bob, &paho.Publish{Topic: "users/bob/s", QoS: 1, Retain: true, Payload: []byte("kept")}); r >= 0x80 {
		t.Fatalf("bob's retain: %#x", r)
	}
	// %c: alice may publish under her client id only.
	if r := pubCode(t, alice, &paho.Publish{Topic: "c/alice-1/x", QoS: 1, Payload: []byte("c")}); r >= 0x80 {
		t.Fatalf("publish under %%c: %#x", r)
	}
	if r := pubCode(t, alice, &paho.Publish{Topic: "c/other/x", QoS: 1, Payload: []byte("c")}); r != byte(packet.NotAuthorized) {
		t.Fatalf("publish under another client id: %#x", r)
	}
	// Nothing refused reached bob: the first thing he gets is the marker after them.
	alice.pub("users/alice/marker", 1, "marker")
	if got := payloads(bob.until("users/alice/marker")); strings.Join(got, ",") != "kept" {
		t.Fatalf("bob received %v", got)
	}
	if srv.Broker.Stats().NotAuthorized.Load() != 5 {
		t.Fatalf("NotAuthorized = %d", srv.Broker.Stats().NotAuthorized.Load())
	}

	// A will on a topic the client may not publish: CONNACK 0x87, 3.1.1: 5.
	will := &packet.Connect{Will: true, WillTopic: []byte("users/bob/gone"), WillPayload: []byte("x"), CleanStart: true}
	if got := rawConnack(t, srv, packet.V5, "w", "alice", "alicepw", will); got != packet.NotAuthorized {
		t.Fatalf("will outside grants: %v", got)
	}
	if got := rawConnack(t, srv, packet.V311, "w", "alice", "alicepw", will); got != packet.V3RefusedNotAuthorized {
		t.Fatalf("3.1.1 will outside grants: %d", got)
	}
}

func TestSenderStampedAndUnforgeable(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) {
		c.Auth.AllowAnonymous = true
		c.Auth.AnonymousGrants = []string{"publish:public/#"}
	})
	bob := loginV5(t, srv, "bob-1", "bob", "bobpw")
	bob.sub("users/#", 0)
	bob.sub("public/#", 0)
	alice := loginV5(t, srv, "alice-1", "alice", "alicepw")
	alice.publish(&paho.Publish{Topic: "users/alice/a", Payload: []byte("from alice"), Properties: &paho.PublishProperties{
		User: paho.UserProperties{{Key: message.SenderProperty, Value: "root"}, {Key: "k", Value: "v"}}}})
	m := bob.expect("users/alice/a", "from alice")
	var senders []string
	for _, u := range m.Properties.User {
		if u.Key == message.SenderProperty {
			senders = append(senders, u.Value)
		}
	}
	if strings.Join(senders, ",") != "alice" || m.Properties.User.Get("k") != "v" {
		t.Fatalf("user properties %+v: want exactly one %s=alice and k=v", m.Properties.User, message.SenderProperty)
	}
	anon := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "anon", CleanStart: true})
	anon.publish(&paho.Publish{Topic: "public/b", Payload: []byte("anonymous"), Properties: &paho.PublishProperties{
		User: paho.UserProperties{{Key: message.SenderProperty, Value: "alice"}}}})
	if m := bob.expect("public/b", "anonymous"); m.Properties.User.Get(message.SenderProperty) != "" {
		t.Fatalf("an anonymous message claims sender %q", m.Properties.User.Get(message.SenderProperty))
	}
}

func TestSessionOwnedByIdentity(t *testing.T) {
	srv := securedServer(t)
	expiry := uint32(3600)
	alice := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "dev-1", Username: "alice", UsernameFlag: true,
		Password: []byte("alicepw"), PasswordFlag: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	alice.sub("users/alice/#", 1)
	if got := rawConnack(t, srv, packet.V5, "dev-1", "bob", "bobpw", nil); got != packet.ClientIDNotValid {
		t.Fatalf("bob on alice's online session: %v", got)
	}
	if got := rawConnack(t, srv, packet.V311, "dev-1", "bob", "bobpw", nil); got != packet.V3RefusedIdentifierRejected {
		t.Fatalf("3.1.1 bob on alice's session: %d", got)
	}
	// Alice is still connected and still receiving.
	other := loginV5(t, srv, "alice-2", "alice", "alicepw")
	other.pub("users/alice/x", 1, "still here")
	alice.expect("users/alice/x", "still here")
}

// authURL is a fake external authorization service.
type authURL struct {
	srv      *httptest.Server
	requests atomic.Int64
	block    chan struct{}
}

func newAuthURL(t *testing.T, handle func(body map[string]any, r *http.Request) (int, any)) *authURL {
	u := &authURL{block: make(chan struct{})}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		status, answer := handle(body, r)
		if status == 0 {
			select { // slow: answer only when the test ends
			case <-u.block:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(func() { close(u.block); u.srv.Close() })
	return u
}

func TestExternalAuthorizationURL(t *testing.T) {
	u := newAuthURL(t, func(b map[string]any, _ *http.Request) (int, any) {
		switch b["username"] {
		case "dave":
			if b["password"] == "davepw" {
				return 200, map[string]any{"result": "allow", "identity": "dave",
					"grants": []map[string]string{{"action": "publish", "filter": "dave/#"}}, "ttl": 3600}
			}
			return 200, map[string]any{"result": "deny"}
		case "slow":
			return 0, nil
		}
		return 200, map[string]any{"result": "ignore"}
	})
	srv := securedServer(t, func(c *config.Config) {
		c.Auth.URL = u.srv.URL
		c.Auth.URLTimeout = 300 * time.Millisecond
	})
	if got := rawConnack(t, srv, packet.V5, "d1", "dave", "davepw", nil); got != packet.Success {
		t.Fatalf("allowed by the URL: %v", got)
	}
	before := u.requests.Load()
	v := loginV5(t, srv, "d1", "dave", "davepw") // same credentials and client id: cached
	if u.requests.Load() != before {
		t.Fatalf("a cached decision asked the URL again (%d requests)", u.requests.Load())
	}
	if r := pubCode(t, v, &paho.Publish{Topic: "dave/x", QoS: 1, Payload: []byte("x")}); r >= 0x80 {
		t.Fatalf("URL grant: %#x", r)
	}
	if r := pubCode(t, v, &paho.Publish{Topic: "other/x", QoS: 1, Payload: []byte("x")}); r != byte(packet.NotAuthorized) {
		t.Fatalf("outside the URL's grants: %#x", r)
	}
	if got := rawConnack(t, srv, packet.V5, "d3", "dave", "wrong", nil); got != packet.BadUsernameOrPassword {
		t.Fatalf("denied by the URL: %v", got)
	}
	if got := rawConnack(t, srv, packet.V5, "a1", "alice", "alicepw", nil); got != packet.Success {
		t.Fatalf("ignored by the URL, a local user: %v", got)
	}
	start := time.Now()
	if got := rawConnack(t, srv, packet.V5, "s1", "slow", "x", nil); got != packet.ServerUnavailable {
		t.Fatalf("slow URL: %v", got)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a slow URL held the connect for %v", took)
	}

	down := securedServer(t, func(c *config.Config) {
		c.Auth.URL = "http://127.0.0.1:1/auth" // nothing listens on port 1
	})
	if got := rawConnack(t, down, packet.V5, "x", "dave", "davepw", nil); got != packet.ServerUnavailable {
		t.Fatalf("URL down: %v", got)
	}
	if got := rawConnack(t, down, packet.V311, "x", "dave", "davepw", nil); got != packet.V3RefusedServerUnavailable {
		t.Fatalf("3.1.1, URL down: %d", got)
	}
	if down.Auth.Stats().Unavailable.Load() != 2 {
		t.Fatalf("unavailable counter %d", down.Auth.Stats().Unavailable.Load())
	}
}

func TestBearerURL(t *testing.T) {
	u := newAuthURL(t, func(_ map[string]any, r *http.Request) (int, any) {
		if r.Header.Get("Authorization") == "Bearer good-token" {
			return 204, nil
		}
		return 401, map[string]string{"error": "no"}
	})
	srv := startServer(t, func(c *config.Config) {
		c.Auth.URL, c.Auth.URLStyle = u.srv.URL, "bearer"
		c.Auth.URLBearerGrants = []string{"subscribe:feeds/#"}
	})
	if got := rawConnack(t, srv, packet.V5, "b1", "", "good-token", nil); got != packet.Success {
		t.Fatalf("good bearer token: %v", got)
	}
	if got := rawConnack(t, srv, packet.V5, "b2", "", "bad-token", nil); got != packet.BadUsernameOrPassword {
		t.Fatalf("bad bearer token: %v", got)
	}
}

func TestOpenModeOnlyOnLoopback(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir, cfg.Listen = "", config.Listen{MQTT: "0.0.0.0:0"}
	srv, err := server.Start(cfg, nil)
	if err == nil {
		_ = srv.Close()
		t.Fatal("an unconfigured tern started on 0.0.0.0")
	}
	if !strings.Contains(err.Error(), "0.0.0.0:0") || !strings.Contains(err.Error(), "allow_open") {
		t.Fatalf("error %q should name the address and the way out", err)
	}
	cfg.Listen.MQTT = "127.0.0.1:0"
	srv, err = server.Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !srv.Auth.Open() {
		t.Fatal("not open")
	}
	// Open: anybody may do anything, and a claimed user name is not an identity.
	v := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "o", CleanStart: true, Username: "root", UsernameFlag: true})
	v.sub("$SYS/x", 0)
	v.publish(&paho.Publish{Topic: "$SYS/x", Payload: []byte("p")})
	if m := v.expect("$SYS/x", "p"); m.Properties.User.Get(message.SenderProperty) != "" {
		t.Fatal("an unchecked user name became the sender")
	}
}

func TestStatsNeedAdmin(t *testing.T) {
	srv := securedServer(t)
	if err := srv.Auth.PutUser(auth.User{Name: "root", Grants: grants(t, "admin:#")}, []byte("rootpw")); err != nil {
		t.Fatal(err)
	}
	get := func(user, pw string) int {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+srv.Addr("http")+"/v1/stats", nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get("", ""); s != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", s)
	}
	if s := get("alice", "alicepw"); s != http.StatusForbidden {
		t.Fatalf("alice: %d", s)
	}
	if s := get("root", "rootpw"); s != http.StatusOK {
		t.Fatalf("root: %d", s)
	}
	if s := get("root", "nope"); s != http.StatusUnauthorized {
		t.Fatalf("root, wrong password: %d", s)
	}
}

// TestBackoffEndsAfterItsTime: the first refusal period (1 s) passes, the right password then
// gets in, never before, and the success clears the address so a wrong password is checked again.
func TestBackoffEndsAfterItsTime(t *testing.T) {
	clk := clock.NewFake(time.Now())
	srv := securedServerOn(t, []server.Option{server.WithClock(clk)},
		func(c *config.Config) { c.Auth.BackoffFailures = 2; c.Auth.BackoffMax = time.Minute })
	for i := 0; i < 2; i++ {
		if got := rawConnack(t, srv, packet.V5, uniqueID("g"), "alice", "guess", nil); got != packet.BadUsernameOrPassword {
			t.Fatalf("guess %d: %v", i, got)
		}
	}
	clk.Advance(999 * time.Millisecond)
	if got := rawConnack(t, srv, packet.V5, uniqueID("r"), "alice", "alicepw", nil); got != packet.ConnectionRateExceeded {
		t.Fatalf("right password inside the 1 s back-off: %v", got)
	}
	clk.Advance(time.Millisecond)
	if got := rawConnack(t, srv, packet.V5, uniqueID("r"), "alice", "alicepw", nil); got != packet.Success {
		t.Fatalf("right password once the back-off ended: %v", got)
	}
	if got := rawConnack(t, srv, packet.V5, uniqueID("g"), "alice", "guess", nil); got != packet.BadUsernameOrPassword {
		t.Fatalf("a wrong password after the success: %v, want it checked (0x86)", got)
	}
}

// TestTokenExpiryClosesV3: a 3.1.1 client whose token expires loses its connection.
func TestTokenExpiryClosesV3(t *testing.T) {
	srv := securedServer(t)
	tok, _, err := srv.Auth.CreateToken("alice", nil, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	v := connectV3(t, "tcp://"+srv.Addr("mqtt"), "exp3", func(o *mqtt3.ClientOptions) { o.SetUsername("token").SetPassword(tok) })
	select {
	case <-v.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("3.1.1 client still connected after its token expired")
	}
	if got := rawConnack(t, srv, packet.V311, "exp3", "token", tok, nil); got != packet.V3RefusedBadUsernameOrPassword {
		t.Fatalf("reconnecting with the expired token: %d", got)
	}
}

// TestSessionOwnedWhileOffline: alice's persistent session, offline with a message queued, cannot
// be taken (nor wiped by a clean start) by bob; alice then resumes it and gets the message.
func TestSessionOwnedWhileOffline(t *testing.T) {
	srv := securedServer(t)
	expiry := uint32(3600)
	alice := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "dev-1", CleanStart: true, Username: "alice", UsernameFlag: true,
		Password: []byte("alicepw"), PasswordFlag: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	alice.sub("users/alice/#", 1)
	alice.offline(srv, nil)
	loginV5(t, srv, "alice-2", "alice", "alicepw").pub("users/alice/q", 1, "queued for dev-1")

	if got := rawConnack(t, srv, packet.V5, "dev-1", "bob", "bobpw", nil); got != packet.ClientIDNotValid {
		t.Fatalf("bob, clean start, on alice's offline session: %v", got)
	}
	if got := rawConnack(t, srv, packet.V311, "dev-1", "bob", "bobpw", nil); got != packet.V3RefusedIdentifierRejected {
		t.Fatalf("3.1.1 bob on alice's offline session: %d", got)
	}
	r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V5)
	r.send(&packet.Connect{Version: packet.V5, KeepAlive: 30, ClientID: []byte("dev-1"),
		HasUsername: true, Username: []byte("bob"), HasPassword: true, Password: []byte("bobpw")})
	if ack := expectConnack(r); ack.Reason != packet.ClientIDNotValid || ack.SessionPresent {
		t.Fatalf("bob resuming alice's session: %v (session present %v)", ack.Reason, ack.SessionPresent)
	}
	if n := srv.Broker.Stats().RefusedClientID.Load(); n != 3 {
		t.Fatalf("RefusedClientID = %d, want 3", n)
	}

	back := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "dev-1", CleanStart: false, Username: "alice", UsernameFlag: true,
		Password: []byte("alicepw"), PasswordFlag: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if !back.ack.SessionPresent {
		t.Fatal("alice's session was lost")
	}
	back.expect("users/alice/q", "queued for dev-1")
}
