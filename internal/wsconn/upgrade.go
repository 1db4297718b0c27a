// Package wsconn is the server side of a WebSocket (RFC 6455), for every WebSocket endpoint of
// tern: the handshake, and a Conn that is either a byte stream in binary messages (a net.Conn
// whose Read returns the payload of the client's binary frames and whose Write sends each call
// as one binary frame: MQTT and mBus over WebSocket) or a sequence of whole text or binary
// messages (ReadMessage, WriteMessage: the JSON WebSocket and isimud's /sub).
//
// It exists so that an idle WebSocket connection costs what an idle TCP one does. A general
// WebSocket library keeps a goroutine blocked in a read per connection, the HTTP server's
// buffers and the request; this Conn keeps only its framing state (a partly read header and
// where the current frame's payload is), reads nothing ahead of its caller, and passes a
// netio.ErrWouldBlock from the socket through without losing its place, so a face can park it
// in the poller like a TCP connection (see ParkConn).
package wsconn

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/ternmq/tern/internal/netio"
)

// Options say which handshakes Upgrade accepts.
type Options struct {
	// Subprotocols are the ones the server speaks, in order of preference; the first the client
	// offers is chosen. A client that offers none is served without one.
	Subprotocols []string
	// AnyOrigin lets every page connect. Otherwise a browser's Origin must be the request's own
	// host or match one of OriginPatterns (path.Match, case-insensitive, against the origin's
	// host, or its "scheme://host" for a pattern that holds "://"); a request without Origin
	// (not from a browser) is always let in.
	AnyOrigin      bool
	OriginPatterns []string
}

// Upgrade answers the WebSocket handshake of r. On failure it has written an HTTP error (400
// for a malformed handshake, 426 for another protocol version, 403 for a refused origin, 500
// when the connection cannot be taken over) and returns why.
func Upgrade(w http.ResponseWriter, r *http.Request, o Options) (*Conn, error) {
	if code, err := checkHandshake(w, r); err != nil {
		http.Error(w, err.Error(), code)
		return nil, err
	}
	if !o.AnyOrigin {
		if err := checkOrigin(r, o.OriginPatterns); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return nil, err
		}
	}
	h := w.Header()
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Accept", acceptKey(r.Header.Get("Sec-WebSocket-Key")))
	proto := chooseSubprotocol(r, o.Subprotocols)
	if proto != "" {
		h.Set("Sec-WebSocket-Protocol", proto)
	}
	w.WriteHeader(http.StatusSwitchingProtocols)
	// Hijack writes the 101 out; what the client sent after its request (frames may follow at
	// once) is in the reader it hands over.
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return nil, fmt.Errorf("websocket: taking over the connection: %w", err)
	}
	// A TCP or Unix transport goes under a netio.ParkConn, so the connection can park (a TLS
	// one can when its listener put one under it: netio.NewTLSListener).
	c := &Conn{nc: netio.NewParkConn(nc), proto: proto}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		c.pre = append([]byte(nil), b...)
	}
	return c, nil
}

// checkHandshake validates r as an RFC 6455 opening handshake (section 4.2.1).
func checkHandshake(w http.ResponseWriter, r *http.Request) (int, error) {
	if !r.ProtoAtLeast(1, 1) {
		return http.StatusBadRequest, fmt.Errorf("websocket: handshake needs HTTP/1.1, got %s", r.Proto)
	}
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, fmt.Errorf("websocket: handshake must be a GET, got %s", r.Method)
	}
	if !hasToken(r.Header, "Connection", "upgrade") || !hasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		return http.StatusUpgradeRequired, errors.New("websocket: the request does not ask to upgrade to websocket")
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusUpgradeRequired, fmt.Errorf("websocket: unsupported version %q (this server speaks 13)", v)
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
	if err != nil || len(key) != 16 {
		return http.StatusBadRequest, errors.New("websocket: Sec-WebSocket-Key must be 16 bytes in base64")
	}
	return 0, nil
}

// hasToken reports whether any of the header's comma-separated values is token (case-insensitive).
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// checkOrigin lets in a request without Origin, one from its own host, or one whose origin
// matches a pattern.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("websocket: Origin %q is not a URL with a host", origin)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("websocket: origin %q may not connect to %q", u.Host, r.Host)
}

// chooseSubprotocol picks the first of the server's subprotocols the client offers.
func chooseSubprotocol(r *http.Request, ours []string) string {
	var offered []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, t := range strings.Split(v, ",") {
			offered = append(offered, strings.TrimSpace(t))
		}
	}
	for _, p := range ours {
		for _, c := range offered {
			if strings.EqualFold(p, c) {
				return c
			}
		}
	}
	return ""
}

// acceptKey is Sec-WebSocket-Accept for a client's key (RFC 6455 section 4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}
