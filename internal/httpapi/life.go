package httpapi

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
)

// A WebSocket outlives the handler that upgraded it: its connection parks, and the handler
// returns while the client stays. What counts running handlers (the server's shutdown waits for
// them) and open WebSockets (tern_websocket_clients) must then count the connection until it
// ends. A wrapper that counts a request gives it a life (Outlive); a handler that hands its
// connection on keeps it (Keep) until the connection ends.

type lifeKey struct{}

// life is a request's hold on what counts it: the handler holds one reference and every
// keeper one more; ends run, last added first, when the last lets go.
type life struct {
	refs atomic.Int32
	ends []func() // added on the request's goroutine before its handler runs
}

// Outlive gives r a life that ends with end, once its handler and every Keep of it are done,
// or adds end to the life r has (an outer wrapper's). The caller serves the returned request
// and calls done when the handler returns.
func Outlive(r *http.Request, end func()) (*http.Request, func()) {
	if l, ok := r.Context().Value(lifeKey{}).(*life); ok {
		l.ends = append(l.ends, end)
		return r, func() {}
	}
	l := &life{ends: []func(){end}}
	l.refs.Store(1)
	return r.WithContext(context.WithValue(r.Context(), lifeKey{}, l)), l.release
}

func (l *life) release() {
	if l.refs.Add(-1) == 0 {
		for i := len(l.ends) - 1; i >= 0; i-- {
			l.ends[i]()
		}
	}
}

// Keep keeps r counted after its handler returns, until the returned release is called (once;
// more calls do nothing). Without a life (no wrapper counts r) release does nothing.
func Keep(r *http.Request) (release func()) {
	l, ok := r.Context().Value(lifeKey{}).(*life)
	if !ok {
		return func() {}
	}
	l.refs.Add(1)
	return sync.OnceFunc(l.release)
}
