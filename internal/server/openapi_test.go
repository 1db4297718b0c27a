package server_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
	routes := registeredRoutes(t, filepath.Join("..", ".."))
	// The scan must see the routes it is meant to see, or it would require nothing.
	for _, r := range []string{"GET /v1/cluster", "POST /v1/cluster/remove/{node}", "GET /v1/admin/users/{name}", "GET /v1/sub/{filter}", "/push", "/connect"} {
		if !slices.Contains(routes, r) {
			t.Fatalf("the route scan missed %s (found %v)", r, routes)
		}
	}
	for _, r := range routes {
		if _, ok := undocumented[r]; ok {
			continue
		}
		method, path, ok := strings.Cut(r, " ")
		if !ok {
			method, path = "", r
		}
		item := doc.Paths.Find(path)
		switch {
		case item == nil:
			t.Errorf("%s is registered but not documented in docs/openapi.yaml", r)
		case method == "" && len(item.Operations()) == 0:
			t.Errorf("%s is registered but documents no operation", r)
		case method != "" && item.GetOperation(method) == nil:
			t.Errorf("%s is registered but %s %s is not documented", r, method, path)
		}
	}
	for r := range undocumented {
		if !slices.Contains(routes, r) {
			t.Errorf("%s is exempted from the document but no longer registered: drop it from undocumented", r)
		}
	}
	// And the other way round: nothing documented that no route serves.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !slices.Contains(routes, method+" "+path) && !slices.Contains(routes, path) {
				t.Errorf("%s %s is documented but no route serves it", method, path)
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
		"GET /v1/sub/{filter}":           {"format", "session", "session_expiry", "wait", "poll"},
		"POST /v1/req/{topic}":           {"timeout"},
		"POST /v1/call/{ns}/{proc}":      {"timeout"},
		"GET /v1/stats":                  {"sessions"},
		"GET /v1/mbox":                   {"wait", "remove"},
		"POST /v1/mbox/{dst}":            {"reply"},
		"GET /v1/admin/sessions":         {"q", "sort", "order", "limit"},
		"GET /v1/admin/tokens":           {"user"},
		"GET /v1/admin/grants":           {"user", "group"},
		"POST /v1/admin/import/ulwmq":    {"group"},
		"POST /v1/pub/{topic}":           {"qos", "retain", "expiry", "content_type", "prop", "response_topic", "correlation_data"},
		"POST /v1/cluster/remove/{node}": {"force"},
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

// undocumented are the routes the listeners register that docs/openapi.yaml leaves out, and why.
var undocumented = map[string]string{
	"/v1/admin/":           "the catch-all that answers 404 not_found for unknown admin routes",
	"GET /console/assets/": "the console's static files",
	"/connect/":            "mq-go's spelling of /connect with a trailing slash",
	"/send/":               "mq-go's spelling of /send with a trailing slash",
	"/disconnect/":         "mq-go's spelling of /disconnect with a trailing slash",
}

// otherListeners are the source files whose routes are served on a listener of their own, not
// the HTTP API the document describes, and why.
var otherListeners = map[string]string{
	"internal/server/debug.go": "net/http/pprof on the [debug] pprof listener",
}

// methodPattern is a ServeMux pattern with a method.
var methodPattern = regexp.MustCompile(`^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /`)

// registeredRoutes finds, in the non-test Go files under root/internal, every ServeMux pattern
// a route is registered with, in OpenAPI's spelling ("GET /v1/sub/{filter}", or a bare path for
// a pattern without a method): any string literal of the form "METHOD /path" passed first to a
// call (mux.Handle, mux.HandleFunc and helpers that wrap them), a bare path literal passed
// first to Handle or HandleFunc, and the paths of a []string a range loop hands to them. The
// ServeMux keeps its patterns to itself, so reading the source is how a test can learn of a
// route nobody listed.
func registeredRoutes(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	add := func(lit *ast.BasicLit) {
		if lit == nil || lit.Kind != token.STRING {
			return
		}
		v, err := strconv.Unquote(lit.Value)
		if err != nil || !strings.HasPrefix(v, "/") && !methodPattern.MatchString(v) {
			return
		}
		v = strings.ReplaceAll(v, "...}", "}") // {topic...} is {topic} in OpenAPI
		v = strings.TrimSuffix(v, "{$}")       // "GET /{$}" is "GET /"
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	isHandle := func(call *ast.CallExpr) bool {
		sel, ok := call.Fun.(*ast.SelectorExpr)
		return ok && (sel.Sel.Name == "Handle" || sel.Sel.Name == "HandleFunc") && len(call.Args) == 2
	}
	fset := token.NewFileSet()
	err := filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		if rel, _ := filepath.Rel(root, path); otherListeners[filepath.ToSlash(rel)] != "" {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if len(n.Args) == 0 {
					return true
				}
				lit, _ := n.Args[0].(*ast.BasicLit)
				if lit != nil && isHandle(n) {
					add(lit)
				} else if lit != nil && lit.Kind == token.STRING {
					if v, _ := strconv.Unquote(lit.Value); methodPattern.MatchString(v) {
						add(lit)
					}
				}
			case *ast.RangeStmt:
				list, _ := n.X.(*ast.CompositeLit)
				val, _ := n.Value.(*ast.Ident)
				if list == nil || val == nil {
					return true
				}
				uses := false
				ast.Inspect(n.Body, func(m ast.Node) bool {
					if c, ok := m.(*ast.CallExpr); ok && isHandle(c) {
						if id, ok := c.Args[0].(*ast.Ident); ok && id.Name == val.Name {
							uses = true
						}
					}
					return true
				})
				if uses {
					for _, e := range list.Elts {
						lit, _ := e.(*ast.BasicLit)
						add(lit)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatalf("reading the sources for routes: %v", err)
	}
	slices.Sort(out)
	return out
}
