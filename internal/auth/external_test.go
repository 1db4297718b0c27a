package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// authServer is an external authorization service whose answer each test sets.
type authServer struct {
	*httptest.Server
	hits    atomic.Int32
	mu      sync.Mutex
	last    map[string]any // last json request body
	lastHdr http.Header
	answer  func(w http.ResponseWriter, r *http.Request)
}

func newAuthServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *authServer {
	s := &authServer{answer: answer}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.last = nil
		_ = json.Unmarshal(body, &s.last)
		s.lastHdr = r.Header.Clone()
		s.mu.Unlock()
		s.answer(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func jsonAnswer(body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

func urlEnv(t *testing.T, srv *authServer, mod func(*URLConfig)) *env {
	return newEnv(t, func(c *Config) {
		c.URL = URLConfig{URL: srv.URL + "/auth", Timeout: 2 * time.Second}
		c.DefaultGrants = mustGrants(t, "push:inbox/%u")
		if mod != nil {
			mod(&c.URL)
		}
	})
}

func TestURLJSONAllow(t *testing.T) {
	srv := newAuthServer(t, jsonAnswer(`{"result":"allow","identity":"ext-alice",
		"grants":[{"action":"publish","filter":"ext/%u/#"},{"action":"subscribe","filter":"cmd/%c"},
		{"action":"fly","filter":"x"},{"action":"publish","filter":"a/#/b"}],"ttl":30}`))
	e := urlEnv(t, srv, nil)
	p, err := e.auth(Credentials{Face: "mqtt", ClientID: "dev1", Username: "alice", Password: []byte("pw"), RemoteAddr: "192.0.2.9:5555"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Identity != "ext-alice" || p.Source != SourceURL {
		t.Fatalf("principal = %+v", p)
	}
	if !p.Allow(Publish, "ext/ext-alice/t") || !p.AllowFilter(Subscribe, "cmd/dev1") || !p.Allow(Push, "inbox/ext-alice") || p.Allow(Publish, "x") {
		t.Fatal("grants from the URL not applied")
	}
	if len(p.Grants()) != 3 { // the two bad grants are left out, the default grant added
		t.Fatalf("grants = %v", p.Grants())
	}
	srv.mu.Lock()
	want := map[string]any{"username": "alice", "password": "pw", "client_id": "dev1", "face": "mqtt", "remote_addr": "192.0.2.9:5555"}
	for k, v := range want {
		if srv.last[k] != v {
			t.Errorf("request %s = %v, want %v", k, srv.last[k], v)
		}
	}
	if srv.lastHdr.Get("Content-Type") != "application/json" {
		t.Errorf("content type %q", srv.lastHdr.Get("Content-Type"))
	}
	srv.mu.Unlock()
	if e.logs.count("sent a bad grant") != 1 {
		t.Errorf("bad grants not logged once:\n%s", e.logs.buf.String())
	}

	// A binary password travels base64-encoded; an answer without identity names the user.
	srv.answer = jsonAnswer(`{"result":"allow"}`)
	p, err = e.auth(Credentials{Username: "bin", Password: []byte{0xff, 0x00}})
	if err != nil || p.Identity != "bin" {
		t.Fatalf("binary password: %+v, %v", p, err)
	}
	srv.mu.Lock()
	if srv.last["password_base64"] != "/wA=" || srv.last["password"] != nil {
		t.Errorf("binary password sent as %v / %v", srv.last["password"], srv.last["password_base64"])
	}
	srv.mu.Unlock()
}

func TestURLJSONDenyAndIgnore(t *testing.T) {
	srv := newAuthServer(t, jsonAnswer(`{"result":"deny"}`))
	e := urlEnv(t, srv, nil)
	e.addUser(t, "local", "pw", nil, "publish:local")
	if _, err := e.login("local", "pw"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("denied: %v", err)
	}
	if e.a.Stats().URLDenied.Load() != 1 {
		t.Error("denial not counted")
	}
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		srv.answer = func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }
		if _, err := e.auth(Credentials{Username: "x", Password: []byte{byte(status)}}); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("status %d: %v", status, err)
		}
	}
	// "ignore" hands over to the local users.
	srv.answer = jsonAnswer(`{"result":"IGNORE"}`)
	p, err := e.auth(Credentials{Username: "local", Password: []byte("pw2"), RemoteAddr: "198.51.100.1:1"})
	if !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("ignored, wrong local password: %v", err)
	}
	_ = e.a.PutUser(User{Name: "local", Grants: mustGrants(t, "publish:local")}, []byte("pw2"))
	p, err = e.auth(Credentials{Username: "local", Password: []byte("pw2"), RemoteAddr: "198.51.100.1:1"})
	if err != nil || p.Source != SourcePassword || !p.Allow(Publish, "local") {
		t.Fatalf("ignored, local user: %+v, %v", p, err)
	}
	// And to anonymous refusal when there are no credentials.
	if _, err := e.auth(Credentials{RemoteAddr: "198.51.100.2:1"}); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("ignored, anonymous: %v", err)
	}
}

func TestURLUnavailable(t *testing.T) {
	cases := map[string]func(http.ResponseWriter, *http.Request){
		"500":          func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) },
		"404":          func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) },
		"redirect":     func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) },
		"bad json":     jsonAnswer(`{"result":`),
		"bad result":   jsonAnswer(`{"result":"maybe"}`),
		"empty body":   func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) },
		"long answer":  jsonAnswer(`{"result":"allow","identity":"` + strings.Repeat("x", maxAnswerBytes) + `"}`),
		"wrong shape":  jsonAnswer(`["allow"]`),
		"grants shape": jsonAnswer(`{"result":"allow","grants":"all"}`),
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newAuthServer(t, answer)
			e := urlEnv(t, srv, nil)
			for range 2 {
				if _, err := e.auth(Credentials{Username: "u", Password: []byte("p")}); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("%v", err)
				}
			}
			if srv.hits.Load() != 2 {
				t.Fatalf("failure cached: %d requests", srv.hits.Load())
			}
		})
	}
}

func TestURLDown(t *testing.T) {
	srv := newAuthServer(t, jsonAnswer(`{"result":"allow"}`))
	e := urlEnv(t, srv, nil)
	srv.Close()
	for range 3 {
		if _, err := e.auth(Credentials{Username: "u", Password: []byte("p")}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("down: %v", err)
		}
	}
	if n := e.logs.count(`cause="auth unavailable"`); n != 1 {
		t.Fatalf("logged %d times within the interval", n)
	}
	e.clock.Add(time.Minute)
	_, _ = e.auth(Credentials{Username: "u", Password: []byte("p")})
	if n := e.logs.count(`cause="auth unavailable"`); n != 2 {
		t.Fatalf("logged %d times after the interval", n)
	}
	if e.a.Stats().Unavailable.Load() != 4 {
		t.Errorf("unavailable counted %d", e.a.Stats().Unavailable.Load())
	}
	// Unavailability is not the client's fault: no back-off.
	if e.a.Stats().Backoff.Load() != 0 {
		t.Error("back-off after outages")
	}
}

func TestURLSlow(t *testing.T) {
	release := make(chan struct{})
	srv := newAuthServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	e := urlEnv(t, srv, func(u *URLConfig) { u.Timeout = 50 * time.Millisecond })
	start := time.Now()
	_, err := e.auth(Credentials{Username: "u", Password: []byte("p")})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("slow URL: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout not applied: %v", d)
	}
}

func TestURLCacheTTL(t *testing.T) {
	srv := newAuthServer(t, jsonAnswer(`{"result":"allow","identity":"a","ttl":30}`))
	e := urlEnv(t, srv, nil)
	c := Credentials{Username: "u", Password: []byte("p"), ClientID: "c", RemoteAddr: "192.0.2.1:1000"}
	for range 3 {
		if _, err := e.auth(c); err != nil {
			t.Fatal(err)
		}
		c.RemoteAddr = "192.0.2.1:1001" // a new connection from the same host uses the cache
	}
	if srv.hits.Load() != 1 || e.a.Stats().URLCacheHits.Load() != 2 {
		t.Fatalf("requests %d, cache hits %d", srv.hits.Load(), e.a.Stats().URLCacheHits.Load())
	}
	// Other credentials are decided separately.
	c2 := c
	c2.Password = []byte("other")
	_, _ = e.auth(c2)
	if srv.hits.Load() != 2 {
		t.Fatalf("other password answered from the cache")
	}
	e.clock.Add(29 * time.Second)
	_, _ = e.auth(c)
	if srv.hits.Load() != 2 {
		t.Fatal("asked again within the ttl")
	}
	e.clock.Add(time.Second)
	_, _ = e.auth(c)
	if srv.hits.Load() != 3 {
		t.Fatal("not asked again after the ttl")
	}
	// ttl 0 is not cached; a huge ttl is capped at MaxTTL.
	srv.answer = jsonAnswer(`{"result":"deny","ttl":0}`)
	c.Username = "v"
	_, _ = e.auth(c)
	_, _ = e.auth(c)
	if srv.hits.Load() != 5 {
		t.Fatalf("ttl 0 cached: %d requests", srv.hits.Load())
	}
	srv.answer = jsonAnswer(`{"result":"deny","ttl":1e300}`)
	c.Username = "w"
	_, _ = e.auth(c)
	e.clock.Add(time.Hour - time.Second)
	_, _ = e.auth(c)
	e.clock.Add(time.Second)
	_, _ = e.auth(c)
	if srv.hits.Load() != 7 {
		t.Fatalf("ttl not capped at an hour: %d requests", srv.hits.Load())
	}
}

func TestURLCacheBoundedAndDisabled(t *testing.T) {
	srv := newAuthServer(t, jsonAnswer(`{"result":"allow"}`))
	e := urlEnv(t, srv, func(u *URLConfig) { u.CacheSize = 2 })
	for _, name := range []string{"a", "b", "c", "a"} {
		_, _ = e.auth(Credentials{Username: name, Password: []byte("p")})
	}
	if srv.hits.Load() != 4 || e.a.url.cache.Len() != 2 {
		t.Fatalf("requests %d, cached %d", srv.hits.Load(), e.a.url.cache.Len())
	}
	srv2 := newAuthServer(t, jsonAnswer(`{"result":"allow","ttl":60}`))
	e = urlEnv(t, srv2, func(u *URLConfig) { u.CacheTTL = -1 })
	for range 2 {
		_, _ = e.auth(Credentials{Username: "a", Password: []byte("p")})
	}
	if srv2.hits.Load() != 2 {
		t.Fatal("cache not disabled")
	}
}

func TestURLBearer(t *testing.T) {
	srv := newAuthServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("Authorization") != "Bearer good-token" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	e := urlEnv(t, srv, func(u *URLConfig) {
		u.Style = "bearer"
		u.BearerGrants = mustGrants(t, "subscribe:feeds/#", "publish:up/%u")
	})
	e.addUser(t, "local", "pw", nil, "publish:local")
	p, err := e.auth(Credentials{Face: "http", Token: "good-token"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Identity, "bearer-") || strings.Contains(p.Identity, "good") || p.Source != SourceURL {
		t.Fatalf("principal = %+v", p)
	}
	if !p.AllowFilter(Subscribe, "feeds/#") || !p.Allow(Publish, "up/"+p.Identity) || !p.Allow(Push, "inbox/"+p.Identity) || p.Allow(Publish, "local") {
		t.Fatal("bearer grants wrong")
	}
	// The MQTT form of a token reaches the URL too.
	if _, err := e.auth(Credentials{Username: "token", Password: []byte("good-token")}); err != nil {
		t.Fatalf("token as MQTT password: %v", err)
	}
	if _, err := e.auth(Credentials{Token: "bad-token"}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("bad bearer token: %v", err)
	}
	// Without a token the bearer URL is not asked: local users sign in as usual.
	hits := srv.hits.Load()
	if p, err := e.login("local", "pw"); err != nil || p.Source != SourcePassword {
		t.Fatalf("local user next to a bearer URL: %v", err)
	}
	if srv.hits.Load() != hits {
		t.Fatal("bearer URL asked without a token")
	}
	// tern's own tokens are checked locally, never sent out.
	secret, _, err := e.a.CreateToken("local", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := e.auth(Credentials{Token: secret}); err != nil || p.Source != SourceToken {
		t.Fatalf("tern token next to a bearer URL: %v", err)
	}
	if srv.hits.Load() != hits {
		t.Fatal("tern token sent to the URL")
	}
}

// TestURLOneRequestForConcurrentClients checks that clients with the same credentials share one
// request: a fleet reconnecting at once must not multiply the load on the service.
func TestURLOneRequestForConcurrentClients(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := newAuthServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, `{"result":"allow","ttl":0}`)
	})
	e := urlEnv(t, srv, nil)
	waiting := make(chan struct{}, 16)
	e.a.url.onWait = func() { waiting <- struct{}{} }
	const n = 8
	errs := make(chan error, n)
	c := Credentials{Username: "fleet", Password: []byte("p")}
	go func() { _, err := e.auth(c); errs <- err }()
	<-arrived
	for range n - 1 {
		go func() { _, err := e.auth(c); errs <- err }()
	}
	for range n - 1 {
		<-waiting
	}
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if srv.hits.Load() != 1 {
		t.Fatalf("%d requests for one set of credentials", srv.hits.Load())
	}
}

func TestDecodeAnswer(t *testing.T) {
	d, bad, err := decodeAnswer([]byte(`{"result":"allow","identity":"x","grants":[{"action":"Publish","filter":"a"}],"ttl":1.5}`), time.Minute, time.Hour)
	if err != nil || len(bad) != 0 || d.verdict != verdictAllow || d.identity != "x" || d.ttl != 1500*time.Millisecond || len(d.grants) != 1 {
		t.Fatalf("decode = %+v %v %v", d, bad, err)
	}
	d, _, _ = decodeAnswer([]byte(`{"result":"deny","identity":"x","grants":[{"action":"publish","filter":"a"}],"ttl":-5}`), time.Minute, time.Hour)
	if d.verdict != verdictDeny || d.identity != "" || d.grants != nil || d.ttl != 0 {
		t.Fatalf("deny carries more than a verdict: %+v", d)
	}
	d, _, _ = decodeAnswer([]byte(`{"result":"ignore"}`), time.Minute, time.Hour)
	if d.verdict != verdictIgnore || d.ttl != time.Minute {
		t.Fatalf("ignore = %+v", d)
	}
}

// TestURLCallerGivesUp checks that a client whose own deadline passes is refused at once, while
// the request it started still completes for the clients after it.
func TestURLCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	srv := newAuthServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, `{"result":"allow","identity":"late","ttl":60}`)
	})
	e := urlEnv(t, srv, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	pw := []byte("p")
	if _, err := e.a.Authenticate(ctx, Credentials{Username: "u", Password: pw, RemoteAddr: "192.0.2.1:4000"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("caller past its deadline: %v", err)
	}
	pw[0] = 'X' // the face reuses its buffer; the request in flight must not see it
	close(release)
	p, err := e.auth(Credentials{Username: "u", Password: []byte("p")})
	if err != nil || p.Identity != "late" {
		t.Fatalf("next caller: %+v, %v", p, err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.hits.Load() != 1 || srv.last["password"] != "p" {
		t.Fatalf("%d requests, password sent %v", srv.hits.Load(), srv.last["password"])
	}
}
