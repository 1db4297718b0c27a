package server_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIDocument: docs/openapi.yaml parses, validates as OpenAPI, and describes the routes
// the HTTP listeners serve.
func TestOpenAPIDocument(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join("..", "..", "docs", "openapi.yaml"))
	if err != nil {
		t.Fatalf("docs/openapi.yaml does not parse: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid OpenAPI: %v", err)
	}
	want := map[string][]string{
		"/":                                  {"GET"},
		"/console/api/login":                 {"POST"},
		"/console/api/logout":                {"POST"},
		"/console/api/session":               {"GET"},
		"/metrics":                           {"GET"},
		"/mqtt":                              {"GET"},
		"/mbus":                              {"GET"},
		"/healthz":                           {"GET"},
		"/readyz":                            {"GET"},
		"/v1/stats":                          {"GET"},
		"/v1/pub/{topic}":                    {"POST"},
		"/v1/sub/{filter}":                   {"GET"},
		"/v1/retained/{filter}":              {"GET"},
		"/v1/req/{topic}":                    {"POST"},
		"/v1/call/{ns}/{proc}":               {"POST"},
		"/v1/services":                       {"GET"},
		"/v1/ws":                             {"GET"},
		"/v1/webhooks":                       {"GET", "POST"},
		"/v1/webhooks/{id}":                  {"GET", "DELETE"},
		"/v1/mbox":                           {"GET"},
		"/v1/mbox/{dst}":                     {"POST"},
		"/v1/mbox/messages/{id}":             {"GET", "DELETE"},
		"/v1/mbox/messages/{id}/reply":       {"POST"},
		"/v1/mbox/{dst}/replies/{id}":        {"GET"},
		"/v1/admin/users":                    {"GET"},
		"/v1/admin/users/{name}":             {"GET", "PUT", "DELETE"},
		"/v1/admin/users/{name}/password":    {"POST"},
		"/v1/admin/groups":                   {"GET"},
		"/v1/admin/groups/{name}":            {"PUT", "DELETE"},
		"/v1/admin/grants":                   {"GET", "POST", "DELETE"},
		"/v1/admin/tokens":                   {"GET", "POST"},
		"/v1/admin/tokens/{id}":              {"DELETE"},
		"/v1/admin/import/ulwmq":             {"POST"},
		"/v1/admin/sessions":                 {"GET"},
		"/v1/admin/sessions/{id}":            {"GET"},
		"/v1/admin/sessions/{id}/disconnect": {"POST"},
		"/v1/admin/sessions/{id}/queue":      {"DELETE"},
		"/v1/admin/faces":                    {"GET"},
		"/v1/admin/webhooks":                 {"GET"},
		"/v1/admin/webhooks/{id}/retry":      {"POST"},
	}
	for path, methods := range want {
		item := doc.Paths.Find(path)
		if item == nil {
			t.Errorf("%s is not documented", path)
			continue
		}
		for _, m := range methods {
			if item.GetOperation(m) == nil {
				t.Errorf("%s %s is not documented", m, path)
			}
		}
	}
	// The mailbox routes answer 406 for an identity that cannot have a mailbox.
	for _, p := range []string{"/v1/mbox", "/v1/mbox/{dst}"} {
		if item := doc.Paths.Find(p); item != nil {
			for _, op := range item.Operations() {
				if op.Responses.Value("406") == nil {
					t.Errorf("%s: the 406 answer is not documented", p)
				}
			}
		}
	}
	// Query parameters the routes read.
	for route, params := range map[string][]string{
		"GET /v1/sub/{filter}":        {"format", "session", "session_expiry", "wait", "poll"},
		"POST /v1/req/{topic}":        {"timeout"},
		"POST /v1/call/{ns}/{proc}":   {"timeout"},
		"GET /v1/stats":               {"sessions"},
		"GET /v1/mbox":                {"wait", "remove"},
		"POST /v1/mbox/{dst}":         {"reply"},
		"GET /v1/admin/sessions":      {"q", "sort", "order", "limit"},
		"GET /v1/admin/tokens":        {"user"},
		"GET /v1/admin/grants":        {"user", "group"},
		"POST /v1/admin/import/ulwmq": {"group"},
		"POST /v1/pub/{topic}":        {"qos", "retain", "expiry", "content_type", "prop", "response_topic", "correlation_data"},
	} {
		method, path, _ := strings.Cut(route, " ")
		item := doc.Paths.Find(path)
		if item == nil || item.GetOperation(method) == nil {
			continue // reported above
		}
		op := item.GetOperation(method)
		for _, name := range params {
			if op.Parameters.GetByInAndName("query", name) == nil && item.Parameters.GetByInAndName("query", name) == nil {
				t.Errorf("%s: query parameter %s is not documented", route, name)
			}
		}
	}
}
