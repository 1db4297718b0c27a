package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/config"
)

// bodyRoutes are the routes that decode a JSON (or JWCC) body, with the content type they expect.
// Routes that wait (long-polls, /waitForReply, streams) are left out: a fuzzer must not block.
var bodyRoutes = []struct{ method, path, ctype string }{
	{"POST", "/v1/webhooks", "application/json"},
	{"PUT", "/v1/admin/users/fz", "application/json"},
	{"PUT", "/v1/admin/groups/fz", "application/json"},
	{"POST", "/v1/admin/grants", "application/json"},
	{"DELETE", "/v1/admin/grants", "application/json"},
	{"POST", "/v1/admin/tokens", "application/json"},
	{"POST", "/v1/admin/users/fz/password", "application/json"},
	{"POST", "/v1/admin/import/ulwmq", "application/octet-stream"},
	{"POST", "/connect", "application/json"},
	{"POST", "/send", "application/json"},
	{"POST", "/disconnect", "application/json"},
	{"POST", "/pub", "application/json"},
	{"POST", "/v1/mbox/fz", "application/json"},
	{"POST", "/push", "application/x-www-form-urlencoded"},
}

// FuzzJSONBodies: whatever body any route that decodes one is sent, it answers with a status
// that says what was wrong (4xx), or success; never a panic, never a 500.
func FuzzJSONBodies(f *testing.F) {
	seeds := []string{
		`{"filter":"a/#","url":"https://example.com/h","max_attempts":3}`,
		`{"grants":["publish:#","deny:subscribe:x"],"groups":["g"],"password":"pw"}`,
		`{"user":"fz","grants":["subscribe:a/#"]}`,
		`{"user":"fz","ttl":"1h","grants":["publish:x"]}`,
		`{"ClientURL":"https://example.com/r","mode":"receive",}`,
		`{"id":1,"body":"a,}b, ]c",}`,
		`{"topic":"a/b","payload":{"x":1}}`,
		`{"body":"hello","wantsReply":true}`,
		`dst=fz&msg=hello`,
		`{"a":`, `[]`, `null`, "\x00\xff", `{"id":18446744073709551615}`,
	}
	for i := range bodyRoutes {
		for _, s := range seeds {
			f.Add(uint8(i), s)
		}
	}
	cfg := config.Default()
	cfg.DataDir = ""
	cfg.Listen = config.Listen{HTTP: "127.0.0.1:0"}
	srv, err := Start(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	h := srv.routes(prometheus.NewRegistry(), nil)
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		rt := bodyRoutes[int(route)%len(bodyRoutes)]
		req := httptest.NewRequest(rt.method, rt.path, strings.NewReader(body))
		req.Header.Set("Content-Type", rt.ctype)
		req.SetBasicAuth("fz", "pw")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= http.StatusInternalServerError {
			t.Fatalf("%s %s with %q: %d %s", rt.method, rt.path, body, rec.Code, rec.Body.String())
		}
	})
}
