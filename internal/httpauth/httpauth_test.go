package httpauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/store/memstore"
)

func TestCredentials(t *testing.T) {
	cert := &x509.Certificate{}
	identify := func(cs tls.ConnectionState) string { return "cert-user" }
	cases := []struct {
		name     string
		prepare  func(r *http.Request)
		identify httpauth.Identify
		want     auth.Credentials
	}{
		{"none", func(*http.Request) {}, nil, auth.Credentials{}},
		{"basic", func(r *http.Request) { r.SetBasicAuth("alice", "pw:with:colons") }, nil,
			auth.Credentials{Username: "alice", Password: []byte("pw:with:colons")}},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tern_abc") }, nil,
			auth.Credentials{Token: "tern_abc"}},
		{"bearer in any case, spaces trimmed", func(r *http.Request) { r.Header.Set("Authorization", "bEaReR  tok ") }, nil,
			auth.Credentials{Token: "tok"}},
		{"other scheme", func(r *http.Request) { r.Header.Set("Authorization", "Digest x") }, nil, auth.Credentials{}},
		{"verified certificate", func(r *http.Request) {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
		}, identify, auth.Credentials{CertIdentity: "cert-user"}},
		{"unverified certificate", func(r *http.Request) {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		}, identify, auth.Credentials{}},
		{"no identify function", func(r *http.Request) {
			r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}
		}, nil, auth.Credentials{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = "192.0.2.7:1234"
			c.prepare(r)
			got := httpauth.Credentials(r, c.identify, "http")
			c.want.Face, c.want.RemoteAddr = "http", "192.0.2.7:1234"
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{auth.ErrBadCredentials, 401, "unauthorized"},
		{fmt.Errorf("%w: token expired", auth.ErrBadCredentials), 401, "unauthorized"},
		{auth.ErrNotAuthorized, 401, "unauthorized"},
		{fmt.Errorf("%w (for 3s)", auth.ErrBackoff), 429, "too_many_attempts"},
		{auth.ErrUnavailable, 503, "auth_unavailable"},
		{errors.New("anything else"), 503, "auth_unavailable"},
	}
	for _, c := range cases {
		if status, code := httpauth.Status(c.err); status != c.status || code != c.code {
			t.Errorf("Status(%v) = %d %s, want %d %s", c.err, status, code, c.status, c.code)
		}
	}
}

func TestWriteError(t *testing.T) {
	w := httptest.NewRecorder()
	httpauth.WriteError(w, http.StatusNotFound, "not_found", `no "such" thing`)
	if w.Code != 404 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
	}
	var body struct {
		Error httpauth.Error `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != "not_found" || body.Error.Message != `no "such" thing` {
		t.Fatalf("body %s: %v", w.Body, err)
	}
}

// failingStore is a store whose reads fail, so auth cannot decide.
type failingStore struct{ auth.Store }

func (failingStore) Get(string, string) ([]byte, bool, error) {
	return nil, false, errors.New("disk gone")
}

func newAuth(t *testing.T, st auth.Store, mod func(*auth.Config)) *auth.Authenticator {
	t.Helper()
	cfg := auth.Config{Argon2: auth.Argon2Params{Memory: 64, Time: 1, Threads: 1}}
	if mod != nil {
		mod(&cfg)
	}
	a, err := auth.New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func addUser(t *testing.T, a *auth.Authenticator, name, pw string, grants ...string) {
	t.Helper()
	var gs []auth.Grant
	for _, s := range grants {
		g, err := auth.ParseGrant(s)
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	if err := a.PutUser(auth.User{Name: name, Grants: gs}, []byte(pw)); err != nil {
		t.Fatal(err)
	}
}

// serve runs Require(admin on "things/{name}") in front of a handler that echoes the
// principal's identity.
func serve(t *testing.T, a httpauth.Authenticator) string {
	t.Helper()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := httpauth.PrincipalFrom(r.Context())
		if p == nil {
			t.Error("no principal in the context")
			return
		}
		fmt.Fprintf(w, "hello %q", p.Identity)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /things/{name}", httpauth.Require(a, nil, auth.Admin,
		func(r *http.Request) string { return "things/" + r.PathValue("name") }, next))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

type answer struct {
	status int
	header http.Header
	code   string
	body   string
}

func get(t *testing.T, url string, prepare func(*http.Request)) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(raw)}
	var e struct{ Error httpauth.Error }
	if json.Unmarshal(raw, &e) == nil {
		a.code = e.Error.Code
	}
	return a
}

func basic(user, pw string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pw) }
}

func TestRequire(t *testing.T) {
	a := newAuth(t, auth.NewMemStore(), nil)
	addUser(t, a, "root", "rootpw", "admin:#")
	addUser(t, a, "alice", "alicepw", "admin:things/%u", "publish:#")
	tok, _, err := a.CreateToken("root", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, a)

	const challenge = `Basic realm="tern", Bearer realm="tern"`
	for name, prepare := range map[string]func(*http.Request){
		"no credentials": nil,
		"wrong password": basic("root", "nope"),
		"unknown user":   basic("mallory", "x"),
		"unknown token":  func(r *http.Request) { r.Header.Set("Authorization", "Bearer tern_nope") },
	} {
		got := get(t, url+"/things/x", prepare)
		if got.status != 401 || got.code != "unauthorized" || got.header.Get("WWW-Authenticate") != challenge {
			t.Errorf("%s: %d %q %q", name, got.status, got.header.Get("WWW-Authenticate"), got.body)
		}
	}
	if got := get(t, url+"/things/bob", basic("alice", "alicepw")); got.status != 403 || got.code != "forbidden" ||
		got.header.Get("WWW-Authenticate") != "" {
		t.Errorf("alice on things/bob: %d %q", got.status, got.body)
	}
	for name, c := range map[string]struct {
		path    string
		prepare func(*http.Request)
		want    string
	}{
		"root":        {"/things/bob", basic("root", "rootpw"), `hello "root"`},
		"alice's own": {"/things/alice", basic("alice", "alicepw"), `hello "alice"`},
		"token":       {"/things/bob", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }, `hello "root"`},
	} {
		if got := get(t, url+c.path, c.prepare); got.status != 200 || got.body != c.want {
			t.Errorf("%s: %d %q", name, got.status, got.body)
		}
	}
	if p := httpauth.PrincipalFrom(context.Background()); p != nil {
		t.Errorf("principal outside Require: %v", p)
	}
}

func TestRequireOpen(t *testing.T) {
	a := newAuth(t, memstore.NewRecords(), nil)
	if !a.Open() {
		t.Fatal("an authenticator with nothing configured is not open")
	}
	url := serve(t, a)
	if got := get(t, url+"/things/x", nil); got.status != 200 || got.body != `hello ""` {
		t.Fatalf("open mode: %d %q", got.status, got.body)
	}
}

func TestRequireBackoff(t *testing.T) {
	// An hour-long first refusal, so the refusal cannot end between the two requests.
	a := newAuth(t, auth.NewMemStore(), func(c *auth.Config) {
		c.Backoff = auth.BackoffConfig{Failures: 1, Base: time.Hour, Max: time.Hour}
	})
	addUser(t, a, "root", "rootpw", "admin:#")
	url := serve(t, a)
	if got := get(t, url+"/things/x", basic("root", "wrong")); got.status != 401 {
		t.Fatalf("first failure: %d %q", got.status, got.body)
	}
	got := get(t, url+"/things/x", basic("root", "rootpw"))
	if got.status != 429 || got.code != "too_many_attempts" || got.header.Get("Retry-After") != "1" {
		t.Fatalf("after a failure: %d %q %q", got.status, got.header.Get("Retry-After"), got.body)
	}
}

func TestRequireUnavailable(t *testing.T) {
	st := auth.NewMemStore()
	a := newAuth(t, st, nil)
	addUser(t, a, "root", "rootpw", "admin:#")
	// The same records, read through a store that now fails.
	url := serve(t, newAuth(t, failingStore{st}, nil))
	if got := get(t, url+"/things/x", basic("root", "rootpw")); got.status != 503 || got.code != "auth_unavailable" {
		t.Fatalf("store down: %d %q", got.status, got.body)
	}
}
