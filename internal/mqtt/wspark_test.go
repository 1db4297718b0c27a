package mqtt

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/certs/certstest"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/wsconn"
)

// startWSFace runs an MQTT face behind an HTTP server whose handler upgrades with wsconn, as
// the server's /mqtt does; with tlsOn the HTTP server is HTTPS (its listener parkable).
func startWSFace(t *testing.T, tlsOn bool) string {
	t.Helper()
	_, addr := startWSFaceWith(t, tlsOn, nil)
	return addr
}

// startWSFaceWith is startWSFace with the face's configuration changed by mod (if not nil).
func startWSFaceWith(t *testing.T, tlsOn bool, mod func(*Config)) (*Server, string) {
	t.Helper()
	b, err := broker.New(broker.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	srv := NewServer(b, cfg, nil)
	t.Cleanup(func() { _ = srv.Close() })
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := wsconn.Upgrade(w, r, wsconn.Options{Subprotocols: []string{"mqtt"}, AnyOrigin: true})
		if err != nil {
			return
		}
		srv.ServeConn(ws)
	}))
	if tlsOn {
		// As the server's HTTPS listener: TLS over a socket that can park.
		cfg := &tls.Config{Certificates: []tls.Certificate{certstest.ServerPair(t)}, MinVersion: tls.VersionTLS12}
		hs.Listener = netio.NewTLSListener(hs.Listener, cfg)
	}
	hs.Start()
	t.Cleanup(hs.Close)
	return srv, hs.Listener.Addr().String()
}

// wsClient is a synchronous MQTT-over-WebSocket client transport: each Write is one masked
// binary frame (cut in two TCP writes of split bytes first, when split is set), Read returns
// the payloads of the server's frames.
type wsClient struct {
	nc    net.Conn
	br    *bufio.Reader
	left  int
	split int
	// frags sends each Write as two frames of one fragmented message.
	frags bool
}

func dialWS(t *testing.T, addr string, tlsOn bool) (*rawClient, *wsClient) {
	t.Helper()
	var nc net.Conn
	var err error
	if tlsOn {
		nc, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		nc, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_, err = fmt.Fprintf(nc, "GET /mqtt HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n", addr)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	wc := &wsClient{nc: nc, br: br}
	return &rawClient{t: t, nc: wc, rd: packet.NewReader(wc, 0, 0), v: packet.V311}, wc
}

func (c *wsClient) frame(fin bool, op byte, p []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	if len(p) <= 125 {
		b = append(b, 0x80|byte(len(p)))
	} else {
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(len(p)))
	}
	mask := [4]byte{9, 8, 7, 6}
	b = append(b, mask[:]...)
	for i, x := range p {
		b = append(b, x^mask[i&3])
	}
	return b
}

func (c *wsClient) Write(p []byte) (int, error) {
	var b []byte
	if c.frags && len(p) > 1 {
		b = append(c.frame(false, 0x2, p[:1]), c.frame(true, 0x0, p[1:])...)
	} else {
		b = c.frame(true, 0x2, p)
	}
	if c.split > 0 && len(b) > c.split {
		if _, err := c.nc.Write(b[:c.split]); err != nil {
			return 0, err
		}
		b = b[c.split:]
	}
	if _, err := c.nc.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsClient) Read(p []byte) (int, error) {
	for c.left == 0 {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return 0, err
		}
		if h[0]&0x0F != 0x2 && h[0]&0x0F != 0x0 {
			return 0, fmt.Errorf("server sent opcode %x", h[0]&0x0F)
		}
		n := int(h[1] & 0x7F)
		switch n {
		case 126:
			var l [2]byte
			if _, err := io.ReadFull(c.br, l[:]); err != nil {
				return 0, err
			}
			n = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			return 0, errors.New("frame too long for this test")
		}
		c.left = n
	}
	n, err := c.br.Read(p[:min(len(p), c.left)])
	c.left -= n
	return n, err
}

func (c *wsClient) Close() error                       { return c.nc.Close() }
func (c *wsClient) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *wsClient) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *wsClient) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *wsClient) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *wsClient) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// Idle MQTT connections over WebSocket (plain and over TLS) park in the poller like TCP ones,
// holding no goroutine, and parked they read every packet however it is cut into frames,
// fragments and TCP segments: one that slept with a packet's bytes read past would miss an
// answer here and the test would time out.
//
// Detached, they do the same with their sockets' bare descriptors (DetachIdle 1 ms: each
// detaches at every park).
func TestIdleWebSocketConnectionsPark(t *testing.T) {
	needPoller(t)
	for _, tc := range []struct {
		name          string
		tlsOn, detach bool
	}{{"ws", false, false}, {"wss", true, false}, {"ws-detached", false, true}, {"wss-detached", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			tlsOn := tc.tlsOn
			detachIdle := time.Duration(0)
			if tc.detach {
				detachIdle = time.Millisecond
			}
			srv, addr := startWSFaceWith(t, tlsOn, func(c *Config) { c.DetachIdle = detachIdle })
			base := runtime.NumGoroutine()
			const n = 20
			type client struct {
				rc *rawClient
				wc *wsClient
			}
			cs := make([]client, n)
			for i := range cs {
				rc, wc := dialWS(t, addr, tlsOn)
				rc.connect(fmt.Sprintf("ws-%v-%d", tlsOn, i), 60)
				cs[i] = client{rc, wc}
			}
			// The test reads synchronously; the server's parked connections hold none.
			waitGoroutines(t, base, n/4)
			if tc.detach {
				deadline := time.Now().Add(10 * time.Second)
				for countTLSDetached(srv) < n {
					if time.Now().After(deadline) {
						t.Fatalf("%d of %d sockets detached", countTLSDetached(srv), n)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			ping := encode(t, &packet.Pingreq{})
			sub := encode(t, &packet.Subscribe{PacketID: 7, Subscriptions: []packet.Subscription{{Filter: []byte("a/long/enough/filter")}}})
			for _, c := range cs {
				// Two packets in one frame.
				if _, err := c.wc.Write(append(append([]byte{}, ping...), ping...)); err != nil {
					t.Fatal(err)
				}
				for range 2 {
					if _, ok := c.rc.must(5 * time.Second).(*packet.Pingresp); !ok {
						t.Fatal("two packets in one frame: no PINGRESP")
					}
				}
			}
			waitGoroutines(t, base, n/4)
			for _, c := range cs {
				// One packet across two frames of a fragmented message, each frame across two
				// TCP writes.
				c.wc.frags, c.wc.split = true, 3
				if _, err := c.wc.Write(sub); err != nil {
					t.Fatal(err)
				}
				c.wc.frags, c.wc.split = false, 0
				if _, ok := c.rc.must(5 * time.Second).(*packet.Suback); !ok {
					t.Fatal("packet across frames: no SUBACK")
				}
			}
			waitGoroutines(t, base, n/4)
			for _, c := range cs {
				// A frame header cut in the middle.
				c.wc.split = 1
				if _, err := c.wc.Write(ping); err != nil {
					t.Fatal(err)
				}
				c.wc.split = 0
				if _, ok := c.rc.must(5 * time.Second).(*packet.Pingresp); !ok {
					t.Fatal("split header: no PINGRESP")
				}
			}
		})
	}
}
