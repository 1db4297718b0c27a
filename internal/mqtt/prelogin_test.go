package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// startFace runs an MQTT face on a loopback port and returns it with its address.
func startFace(t *testing.T, mod func(*Config)) (*Server, string) {
	t.Helper()
	return startFaceLogging(t, nil, mod)
}

// startFaceLogging is startFace with the core logging to log (nil: nowhere).
func startFaceLogging(t *testing.T, log *slog.Logger, mod func(*Config)) (*Server, string) {
	t.Helper()
	return startFaceWith(t, broker.DefaultConfig(), log, mod)
}

// startFaceWith is startFaceLogging over a core configured by bcfg.
func startFaceWith(t *testing.T, bcfg broker.Config, log *slog.Logger, mod func(*Config)) (*Server, string) {
	t.Helper()
	b, err := broker.New(bcfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	srv := NewServer(b, cfg, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln, nil) }()
	t.Cleanup(func() { _ = srv.Close() })
	return srv, ln.Addr().String()
}

// connectHeader is the start of a CONNECT whose fixed header claims size bytes: the fixed header,
// the protocol name and the level, and nothing more.
func connectHeader(size int, v packet.Version) []byte {
	b := []byte{packet.CONNECT << 4}
	for {
		d := byte(size % 128)
		size /= 128
		if size > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if size == 0 {
			break
		}
	}
	return append(b, 0, 4, 'M', 'Q', 'T', 'T', byte(v))
}

// expectClosed reads until the server ends the connection, failing if it has not by within.
func expectClosed(t *testing.T, nc net.Conn, within time.Duration) []byte {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(within))
	got, err := io.ReadAll(nc)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("server kept the connection open for %v (read %x)", within, got)
	}
	return got
}

// The attack: 11 bytes claiming a CONNECT of 1,048,000 bytes made the server allocate all of it.
// Over mqtt.max_connect_size, an MQTT 5 client is told 0x95 and a 3.1.1 client is cut off.
func TestOversizedConnectRefusedBeforeAllocating(t *testing.T) {
	srv, addr := startFace(t, nil)
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if _, err := nc.Write(connectHeader(1_048_000, v)); err != nil {
			t.Fatal(err)
		}
		got := expectClosed(t, nc, 5*time.Second)
		if v == packet.V311 {
			if len(got) != 0 {
				t.Errorf("3.1.1: got %x, want the connection closed without CONNACK", got)
			}
			continue
		}
		p, err := packet.Decode(got, packet.V5)
		ack, ok := p.(*packet.Connack)
		if err != nil || !ok || ack.Reason != packet.PacketTooLarge {
			t.Errorf("MQTT 5: got %x (%v), want CONNACK 0x95", got, err)
		}
	}
	if n := srv.Stats().ConnectTooLarge.Load(); n != 2 {
		t.Errorf("ConnectTooLarge = %d, want 2", n)
	}
}

// A CONNECT within the size limit that arrives in pieces makes the reader grow its buffer with the
// bytes that came, not with the length the header claims.
func TestReaderGrowsWithWhatArrives(t *testing.T) {
	for _, sent := range []int{11, 20_000, 40_000} {
		server, client := tcpPair(t)
		r := newPacketReader(server, 1<<20)
		msg := append(connectHeader(1_000_000, packet.V5), make([]byte, sent)...)[:sent]
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = client.(*net.TCPConn).CloseWrite()
		_, _, _, err := r.next(time.Now().Add(5*time.Second), readWait, nil)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("sent %d: next = %v, want EOF", sent, err)
		}
		if limit := max(readBufSize, 2*sent); len(r.st.buf) > limit {
			t.Errorf("sent %d of a claimed 1,000,000 bytes: buffer of %d bytes, want at most %d", sent, len(r.st.buf), limit)
		}
		r.close()
	}
}

// A packet sent in pieces arrives whole however the pieces fall, bigger than the pooled buffer or
// not, and the bytes after it start the next packet.
func TestReaderReassemblesPieces(t *testing.T) {
	payload := bytes.Repeat([]byte("abcdefghij"), 5000)
	frame, _ := (&packet.Publish{Topic: []byte("t"), Payload: payload}).Append(nil, packet.V311)
	frame, _ = (&packet.Pingreq{}).Append(frame, packet.V311)
	for _, piece := range []int{1, 3, 1000, 16 << 10, len(frame)} {
		server, client := tcpPair(t)
		r := newPacketReader(server, 1<<20)
		go func() {
			for b := frame; len(b) > 0; {
				n := min(piece, len(b))
				if _, err := client.Write(b[:n]); err != nil {
					return
				}
				b = b[n:]
			}
		}()
		deadline := time.Now().Add(10 * time.Second)
		typ, flags, body, err := r.next(deadline, readWait, nil)
		if err != nil || typ != packet.PUBLISH {
			t.Fatalf("pieces of %d: %s %v", piece, packet.TypeName(typ), err)
		}
		var p packet.Publish
		if err := p.Decode(flags, body, packet.V311); err != nil || !bytes.Equal(p.Payload, payload) {
			t.Fatalf("pieces of %d: payload damaged (%v)", piece, err)
		}
		if typ, _, _, err := r.next(deadline, readWait, nil); err != nil || typ != packet.PINGREQ {
			t.Fatalf("pieces of %d: after the publish: %s %v", piece, packet.TypeName(typ), err)
		}
		r.close()
	}
}

// Connections that have not logged in share mqtt.connect_memory: once their buffers hold it, the
// next one to need a buffer is closed, and the budget is whole again when they go.
func TestConnectMemoryBounded(t *testing.T) {
	const budget = 4 * readBufSize
	srv, addr := startFace(t, func(c *Config) { c.ConnectMemory = budget })
	var conns []net.Conn
	for range 12 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// Part of a CONNECT: the server must keep the bytes until the rest comes.
		if _, err := nc.Write(connectHeader(60_000, packet.V5)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().ConnectMemoryFull.Load() < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections closed for memory, want 8 (budget used %d of %d)",
				srv.Stats().ConnectMemoryFull.Load(), srv.reading.connecting.used.Load(), budget)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if used := srv.reading.connecting.used.Load(); used > budget {
		t.Errorf("connecting connections hold %d bytes, budget %d", used, budget)
	}
	// A client that completes its CONNECT still gets in once the others are gone.
	for _, nc := range conns {
		_ = nc.Close()
	}
	for srv.reading.connecting.used.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("budget not returned: %d bytes still held", srv.reading.connecting.used.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := dial(t, addr, packet.V5)
	c.connect("after", 0)
}

// The CONNECT must be complete within connect_timeout of the accept: a client that trickles it one
// byte at a time does not re-arm the clock with each byte.
func TestTrickledConnectTimesOut(t *testing.T) {
	_, addr := startFace(t, func(c *Config) { c.ConnectTimeout = 500 * time.Millisecond })
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	closed := trickle(nc, append(connectHeader(400, packet.V311), make([]byte, 400)...), 50*time.Millisecond)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("a CONNECT trickled a byte every 50ms kept the connection open past the connect timeout")
	}
}

// Keep alive counts whole packets: one byte after another of a PUBLISH that never completes does
// not keep the connection alive.
func TestTrickledPacketDoesNotKeepAlive(t *testing.T) {
	_, addr := startFace(t, nil)
	c := dial(t, addr, packet.V5)
	c.connect("trickler", 1)
	frame, _ := (&packet.Publish{Topic: []byte("t"), Payload: make([]byte, 500)}).Append(nil, packet.V5)
	closed := trickle(c.nc, frame, 100*time.Millisecond)
	p, err := c.recv(10 * time.Second)
	if d, ok := p.(*packet.Disconnect); err != nil || !ok || d.Reason != packet.KeepAliveTimeout {
		t.Fatalf("got %#v, %v; want DISCONNECT keep alive timeout", p, err)
	}
	<-closed
}

// trickle writes b one byte per every, until it is written or a write fails; the channel closes
// when it stops.
func trickle(nc net.Conn, b []byte, every time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := range b {
			if _, err := nc.Write(b[i : i+1]); err != nil {
				return
			}
			<-tick.C
		}
	}()
	return done
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return server, client
}

// eventually waits for cond, failing the test if it does not hold within timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A reader on a connection it cannot poll (TLS, WebSocket: here a pipe) holds no buffer while it
// waits for bytes: it takes the pooled buffer once they arrive, as on a raw socket, so an idle
// TLS connection does not keep 16 KiB. The connect budget shows what it holds.
func TestReaderOverAnyConnHoldsNoBufferWhileWaiting(t *testing.T) {
	srv, cli := net.Pipe()
	defer srv.Close()
	defer cli.Close()
	shared := &readerShared{connecting: connectBudget{max: 1 << 30}}
	budget := &shared.connecting
	r := newPacketReader(srv, 1<<20)
	r.shared = shared
	defer r.close()
	ping, _ := (&packet.Pingreq{}).Append(nil, packet.V311)
	got := make(chan error, 1)
	read := func() {
		typ, _, _, err := r.next(time.Now().Add(10*time.Second), readWait, nil)
		if err == nil && typ != packet.PINGREQ {
			err = fmt.Errorf("read %s", packet.TypeName(typ))
		}
		got <- err
	}
	for i := range 2 {
		go read()
		// Wait until the reader is waiting with nothing held, then send it a packet.
		for deadline := time.Now().Add(2 * time.Second); budget.used.Load() != 0; {
			if time.Now().After(deadline) {
				t.Fatalf("read %d: waiting for bytes holds %d bytes", i, budget.used.Load())
			}
			runtime.Gosched()
		}
		_ = cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := cli.Write(ping); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no packet")
		}
	}
}
