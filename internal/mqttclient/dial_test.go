package mqttclient

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, c := range []struct{ in, scheme, addr, path string }{
		{"", "mqtt", "127.0.0.1:1883", ""},
		{"mqtt://localhost", "mqtt", "localhost:1883", ""},
		{"tcp://10.0.0.1:1884", "mqtt", "10.0.0.1:1884", ""},
		{"mqtts://broker.example", "mqtts", "broker.example:8883", ""},
		{"ssl://broker.example:9000", "mqtts", "broker.example:9000", ""},
		{"ws://127.0.0.1:8080", "ws", "127.0.0.1:8080", "/mqtt"},
		{"ws://127.0.0.1:8080/", "ws", "127.0.0.1:8080", "/mqtt"},
		{"wss://h/custom/path?x=1", "wss", "h:443", "/custom/path?x=1"},
		{"ws://[::1]", "ws", "[::1]:80", "/mqtt"},
		{"unix:///run/tern/tern.sock", "unix", "/run/tern/tern.sock", ""},
		{"unix:tern.sock", "unix", "tern.sock", ""},
		{"unix://tern.sock", "unix", "tern.sock", ""},
	} {
		e, err := Parse(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if e.Scheme != c.scheme || e.Addr != c.addr || e.Path != c.path {
			t.Errorf("%q: got %s %s %q, want %s %s %q", c.in, e.Scheme, e.Addr, e.Path, c.scheme, c.addr, c.path)
		}
	}
	for _, bad := range []string{"http://x", "localhost:1883", "mqtt://", "unix://", "mqtt://%zz"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestDialTCPAndUnix(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			_, _ = c.Write([]byte("hi"))
			_ = c.Close()
		}
	}()
	c, err := Dial(context.Background(), "mqtt://"+ln.Addr().String(), Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q %v", buf, err)
	}
	_ = c.Close()
	if _, err := Dial(context.Background(), "unix:///nonexistent/tern.sock", Options{Timeout: time.Second}); err == nil {
		t.Fatal("dialing a missing socket worked")
	}
}
