package httpapi

import (
	"net/http/httptest"
	"testing"

	"github.com/ternmq/tern/internal/auth"
)

func TestTrustedOrigin(t *testing.T) {
	patterns := []string{"app.example.com", "*.corp.example", "localhost:3000"}
	cases := []struct {
		origin string
		want   bool
	}{
		{"", true}, // not a browser
		{"http://tern.example:8080", true},
		{"https://TERN.example:8080", true},
		{"https://tern.example", false}, // another port is another origin
		{"https://app.example.com", true},
		{"https://App.Example.com", true},
		{"https://app.example.com:8443", false},
		{"https://a.corp.example", true},
		{"https://corp.example", false},
		{"http://localhost:3000", true},
		{"https://evil.example", false},
		{"https://tern.example:8080.evil.example", false},
		{"null", false},
		{"%zz", false},
		{"file://", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "http://tern.example:8080/v1/ws", nil)
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if got := TrustedOrigin(r, patterns); got != c.want {
			t.Errorf("Origin %q: trusted %v, want %v", c.origin, got, c.want)
		}
	}
}

func TestWithoutAmbient(t *testing.T) {
	c := WithoutAmbient(auth.Credentials{Username: "alice", Password: []byte("pw"), CertIdentity: "alice", Token: "tok",
		Face: "http", RemoteAddr: "192.0.2.1:5"})
	if c.Username != "" || c.Password != nil || c.CertIdentity != "" || c.Token != "tok" || c.Face != "http" || c.RemoteAddr == "" {
		t.Fatalf("%+v", c)
	}
}
