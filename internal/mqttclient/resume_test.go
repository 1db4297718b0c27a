package mqttclient

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/certs/certstest"
)

// TestDialTLSResumesWithASessionCache: the second mqtts:// dial sharing Options.SessionCache
// resumes the first one's session (the TLS storm of tern bench --tls-resume depends on it), and
// a dial without a cache does a full handshake.
func TestDialTLSResumesWithASessionCache(t *testing.T) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{certstest.ServerPair(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// The ticket goes out with the first write after the handshake.
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte("hi"))
			_ = c.Close()
		}
	}()
	dial := func(o Options) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		o.Insecure, o.Timeout = true, 5*time.Second
		c, err := Dial(ctx, "mqtts://"+ln.Addr().String(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2)
		if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
			t.Fatalf("read %q %v", buf, err)
		}
		return c.(*tls.Conn).ConnectionState().DidResume
	}
	cache := tls.NewLRUClientSessionCache(4)
	if dial(Options{SessionCache: cache}) {
		t.Fatal("the first dial resumed with an empty cache")
	}
	if !dial(Options{SessionCache: cache}) {
		t.Fatal("the second dial with the shared cache did not resume")
	}
	if dial(Options{}) {
		t.Fatal("a dial without a cache resumed")
	}
}
