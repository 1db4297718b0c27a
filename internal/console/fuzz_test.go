package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/auth"
)

// FuzzLogin: whatever body a login brings, the console answers in its terms (200 with a
// session, 400 bad_json, 401/429/503 from authentication) and never crashes.
func FuzzLogin(f *testing.F) {
	a, err := auth.New(auth.Config{Argon2: auth.Argon2Params{Memory: 64, Time: 1, Threads: 1}}, auth.NewMemStore(), nil)
	if err != nil {
		f.Fatal(err)
	}
	if err := a.PutUser(auth.User{Name: "root"}, []byte("pw")); err != nil {
		f.Fatal(err)
	}
	c := New(a, nil, nil)
	mux := http.NewServeMux()
	c.Register(mux, nil)
	for _, s := range []string{`{"username":"root","password":"pw"}`, `{"token":"tern_x"}`, `{}`, `{"username":1}`, `[`, ``, `null`,
		`{"username":"root","password":"pw"} trailing`, "{\"username\":\"\\u0000\"}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/console/api/login", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable:
		default:
			t.Fatalf("login with %q: %d %s", body, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && len(rec.Result().Cookies()) != 0 {
			t.Fatalf("a refused login set a cookie: %q", body)
		}
	})
}
