// Package mqttclient opens the byte stream an MQTT client speaks over, whatever the URL scheme:
// TCP, TLS, WebSocket (plain or secure) or a Unix socket. It knows nothing of MQTT itself; the
// command-line client hands the connection to paho, and the load tool speaks tern's own codec on it.
package mqttclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// DefaultURL is where clients connect when told nothing: `tern serve`'s default MQTT listener.
const DefaultURL = "mqtt://127.0.0.1:1883"

// Options tune the dial.
type Options struct {
	// CAFile is a PEM bundle of the certificate authorities to trust for mqtts:// and wss://;
	// empty means the system's roots.
	CAFile string
	// Insecure skips verification of the server certificate (testing only).
	Insecure bool
	// CertFile and KeyFile are a client certificate and its key (PEM) for mutual TLS.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server certificate.
	ServerName string
	// Timeout bounds the dial, including the TLS and WebSocket handshakes; 0 means only ctx does.
	Timeout time.Duration
	// SessionCache, when set, keeps TLS sessions (TLS 1.3 tickets) so that the next dial to the
	// same server resumes instead of doing a full handshake; share one across dials.
	SessionCache tls.ClientSessionCache
	// Groups, when set, are the only TLS key exchanges the client offers, in order of
	// preference (see ParseGroups); nil offers Go's defaults, which start with the
	// post-quantum hybrid X25519MLKEM768.
	Groups []tls.CurveID
}

// Endpoint is a parsed broker URL.
type Endpoint struct {
	Scheme string // mqtt, mqtts, ws, wss or unix
	// Addr is host:port for the network schemes and the socket path for unix.
	Addr string
	// Path is the HTTP path of a WebSocket endpoint (default /mqtt).
	Path string
	// Host is the host name without port, for TLS verification.
	Host string
	raw  *url.URL
}

// Parse reads a broker URL: mqtt://host[:1883], mqtts://host[:8883], ws://host[:80][/mqtt],
// wss://host[:443][/mqtt] or unix:///path/to/socket (unix:relative/path works too). tcp://,
// tls:// and ssl:// are accepted as the aliases other clients use.
func Parse(raw string) (Endpoint, error) {
	if raw == "" {
		raw = DefaultURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("broker URL %q: %w", raw, err)
	}
	e := Endpoint{Scheme: strings.ToLower(u.Scheme), raw: u}
	switch e.Scheme {
	case "tcp":
		e.Scheme = "mqtt"
	case "tls", "ssl", "mqtt+tls":
		e.Scheme = "mqtts"
	}
	switch e.Scheme {
	case "unix":
		e.Addr = u.Path
		if u.Opaque != "" {
			e.Addr = u.Opaque
		}
		if u.Host != "" && u.Path == "" {
			e.Addr = u.Host // unix://relative.sock
		} else if u.Host != "" {
			e.Addr = u.Host + u.Path // unix://relative/dir/tern.sock
		}
		if e.Addr == "" {
			return Endpoint{}, fmt.Errorf("broker URL %q: no socket path (use unix:///path/to/sock)", raw)
		}
		return e, nil
	case "mqtt", "mqtts", "ws", "wss":
	case "":
		return Endpoint{}, fmt.Errorf("broker URL %q: no scheme (use mqtt://, mqtts://, ws://, wss:// or unix://)", raw)
	default:
		return Endpoint{}, fmt.Errorf("broker URL %q: unknown scheme %q (use mqtt://, mqtts://, ws://, wss:// or unix://)", raw, u.Scheme)
	}
	if u.Hostname() == "" {
		return Endpoint{}, fmt.Errorf("broker URL %q: no host", raw)
	}
	e.Host = u.Hostname()
	port := u.Port()
	if port == "" {
		port = map[string]string{"mqtt": "1883", "mqtts": "8883", "ws": "80", "wss": "443"}[e.Scheme]
	}
	e.Addr = net.JoinHostPort(e.Host, port)
	if e.Scheme == "ws" || e.Scheme == "wss" {
		e.Path = u.EscapedPath()
		if e.Path == "" || e.Path == "/" {
			e.Path = "/mqtt"
		}
		if u.RawQuery != "" {
			e.Path += "?" + u.RawQuery
		}
	}
	return e, nil
}

// String gives the URL back in canonical form.
func (e Endpoint) String() string {
	switch e.Scheme {
	case "unix":
		return "unix://" + e.Addr
	case "ws", "wss":
		return e.Scheme + "://" + e.Addr + e.Path
	}
	return e.Scheme + "://" + e.Addr
}

// Dial parses rawURL and connects.
func Dial(ctx context.Context, rawURL string, o Options) (net.Conn, error) {
	e, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	return e.Dial(ctx, o)
}

// Dial opens a connection to the endpoint. The returned net.Conn carries MQTT bytes as a plain
// stream whatever the transport (WebSocket messages are binary frames, as MQTT requires).
func (e Endpoint) Dial(ctx context.Context, o Options) (net.Conn, error) {
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	var d net.Dialer
	switch e.Scheme {
	case "unix":
		return d.DialContext(ctx, "unix", e.Addr)
	case "mqtt":
		return d.DialContext(ctx, "tcp", e.Addr)
	case "mqtts":
		cfg, err := e.tlsConfig(o)
		if err != nil {
			return nil, err
		}
		td := tls.Dialer{NetDialer: &d, Config: cfg}
		return td.DialContext(ctx, "tcp", e.Addr)
	case "ws", "wss":
		return e.dialWebSocket(ctx, o)
	}
	return nil, fmt.Errorf("unknown scheme %q", e.Scheme)
}

func (e Endpoint) tlsConfig(o Options) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: e.Host, InsecureSkipVerify: o.Insecure, MinVersion: tls.VersionTLS12,
		ClientSessionCache: o.SessionCache, CurvePreferences: o.Groups}
	if o.ServerName != "" {
		cfg.ServerName = o.ServerName
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		if o.CertFile == "" || o.KeyFile == "" {
			return nil, errors.New("a client certificate needs both its certificate and its key file")
		}
		kp, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

func (e Endpoint) dialWebSocket(ctx context.Context, o Options) (net.Conn, error) {
	scheme := "http"
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true, ForceAttemptHTTP2: false}
	if e.Scheme == "wss" {
		scheme = "https"
		cfg, err := e.tlsConfig(o)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	target := scheme + "://" + e.Addr + e.Path
	ws, resp, err := websocket.Dial(ctx, target, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		Subprotocols: []string{"mqtt"},
	})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("websocket %s: %w", target, err)
	}
	if ws.Subprotocol() != "mqtt" {
		_ = ws.CloseNow()
		return nil, errors.New("websocket: server did not accept the \"mqtt\" subprotocol")
	}
	// The connection lives beyond the dial's context; Close ends it.
	return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
}
