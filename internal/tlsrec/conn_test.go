package tlsrec

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/certs/certstest"
	"github.com/ternmq/tern/internal/netio"
)

// pair is a server Conn of this package and a crypto/tls client, connected over loopback TCP.
type pair struct {
	srv *Conn
	cli *tls.Conn
	raw net.Conn // the client's socket, under cli
}

func serverConfig(t *testing.T) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{certstest.ServerPair(t)}}
}

// listen serves cfg on loopback; each accepted Conn is sent on the returned channel.
func listen(t *testing.T, cfg *tls.Config) (string, <-chan *Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	tl := NewListener(ln, cfg)
	conns := make(chan *Conn, 8)
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c.(*Conn)
		}
	}()
	return ln.Addr().String(), conns
}

// dial connects a client with cfg and completes the handshake on both sides.
func dial(t *testing.T, addr string, conns <-chan *Conn, cfg *tls.Config) *pair {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cli := tls.Client(raw, cfg)
	srv := <-conns
	t.Cleanup(func() { _ = cli.Close(); _ = srv.Close() })
	deadline := time.Now().Add(10 * time.Second)
	_ = raw.SetDeadline(deadline)
	_ = srv.SetDeadline(deadline)
	errc := make(chan error, 1)
	go func() { errc <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	return &pair{srv: srv, cli: cli, raw: raw}
}

func clientConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
}

func setup(t *testing.T) *pair {
	addr, conns := listen(t, serverConfig(t))
	return dial(t, addr, conns, clientConfig())
}

// echo sends msg from the client, reads it at the server, sends it back and reads it at the
// client.
func echo(t *testing.T, p *pair, msg []byte) {
	t.Helper()
	go func() { _, _ = p.cli.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(p.srv, got); err != nil {
		t.Fatalf("server read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("server read other bytes than the client sent")
	}
	go func() { _, _ = p.srv.Write(got) }()
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(p.cli, back); err != nil {
		t.Fatalf("client read: %v", err)
	}
	if !bytes.Equal(back, msg) {
		t.Fatal("client read other bytes than the server sent")
	}
}

func TestTakesOverTLS13(t *testing.T) {
	p := setup(t)
	if !p.srv.TookOver() {
		t.Fatal("a TLS 1.3 connection stayed a tls.Conn")
	}
	cs := p.srv.ConnectionState()
	if cs.Version != tls.VersionTLS13 || !cs.HandshakeComplete || cs.CipherSuite != p.cli.ConnectionState().CipherSuite {
		t.Fatalf("state %+v", cs)
	}
	echo(t, p, []byte("hello"))
	echo(t, p, bytes.Repeat([]byte("0123456789abcdef"), 4096)) // 64 KiB: several records
}

func TestLargeTransfersBothWays(t *testing.T) {
	p := setup(t)
	big := make([]byte, 3<<20+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	want := sha256.Sum256(big)
	for _, way := range []struct {
		to       string
		from, at io.ReadWriter
	}{{"server", p.cli, p.srv}, {"client", p.srv, p.cli}} {
		errc := make(chan error, 1)
		go func() {
			_, err := way.from.Write(big)
			errc <- err
		}()
		h := sha256.New()
		if _, err := io.CopyN(h, way.at, int64(len(big))); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("the %s received other bytes", way.to)
		}
	}
}

func TestTLS12StaysATLSConn(t *testing.T) {
	addr, conns := listen(t, serverConfig(t))
	cfg := clientConfig()
	cfg.MaxVersion = tls.VersionTLS12
	p := dial(t, addr, conns, cfg)
	if p.srv.TookOver() {
		t.Fatal("a TLS 1.2 connection was taken over")
	}
	if v := p.srv.ConnectionState().Version; v != tls.VersionTLS12 {
		t.Fatalf("version %x", v)
	}
	echo(t, p, []byte("over 1.2"))
	p.srv.Park() // a no-op for a tls.Conn
	echo(t, p, []byte("still there"))
}

func TestResumptionWithTickets(t *testing.T) {
	addr, conns := listen(t, serverConfig(t))
	cfg := clientConfig()
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	first := dial(t, addr, conns, cfg)
	// The client takes the ticket in as it reads; the first record this package sends must
	// follow the ticket in sequence, or the client would fail to open it.
	echo(t, first, []byte("first"))
	second := dial(t, addr, conns, cfg)
	if !second.cli.ConnectionState().DidResume || !second.srv.ConnectionState().DidResume {
		t.Fatal("the second connection did not resume")
	}
	if !second.srv.TookOver() {
		t.Fatal("a resumed connection stayed a tls.Conn")
	}
	echo(t, second, []byte("second"))
}

func TestTicketsDisabled(t *testing.T) {
	cfg := serverConfig(t)
	cfg.SessionTicketsDisabled = true
	addr, conns := listen(t, cfg)
	p := dial(t, addr, conns, clientConfig())
	if !p.srv.TookOver() {
		t.Fatal("not taken over")
	}
	echo(t, p, []byte("no tickets"))
}

// TestMutualTLS: the client's verified certificate reaches ConnectionState (an identity is read
// from it), and the ticket sent after the client's Finished is counted.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	if err := certs.CreateCA(dir, "test CA", 0); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := certs.Issue(dir, dir, "server", certs.IssueOptions{Server: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := certs.Issue(dir, dir, "Alice", certs.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := certs.NewServerTLS(certs.ServerTLSOptions{CertFile: certFile, KeyFile: keyFile,
		ClientCAFile: filepath.Join(dir, certs.CACertFile), RequireClientCert: true})
	if err != nil {
		t.Fatal(err)
	}
	addr, conns := listen(t, st.Config())
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, certs.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1",
		ClientSessionCache: tls.NewLRUClientSessionCache(2)}
	p := dial(t, addr, conns, cfg)
	if !p.srv.TookOver() {
		t.Fatal("not taken over")
	}
	if id := st.Identity(p.srv.ConnectionState()); id != "alice" {
		t.Fatalf("identity %q, want alice", id)
	}
	echo(t, p, []byte("mutual"))
	again := dial(t, addr, conns, cfg)
	if !again.srv.ConnectionState().DidResume {
		t.Fatal("did not resume")
	}
	if id := st.Identity(again.srv.ConnectionState()); id != "alice" {
		t.Fatalf("resumed identity %q, want alice", id)
	}
	echo(t, again, []byte("resumed"))
}

// TestKeyUpdates: with a key update due every few records, the server moves its sending key
// (asking for an update in return) and the crypto/tls client answers with a KeyUpdate of its
// own, which the server's reading side follows.
func TestKeyUpdates(t *testing.T) {
	defer func(n uint64) { keyUpdateAfter = n }(keyUpdateAfter)
	keyUpdateAfter = 3
	p := setup(t)
	before := p.srv.in.dir.secret
	for i := range 20 {
		echo(t, p, []byte(strings.Repeat("k", i+1)))
	}
	if p.srv.in.dir.secret == before {
		t.Fatal("the client never updated its key")
	}
	if p.srv.out.dir.seq > keyUpdateAfter+1 {
		t.Fatalf("sent %d records under one key", p.srv.out.dir.seq)
	}
}

func TestCloseNotify(t *testing.T) {
	p := setup(t)
	echo(t, p, []byte("x"))
	if err := p.cli.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := p.srv.Read(buf); err != io.EOF {
		t.Fatalf("read after close_notify: %v, want EOF", err)
	}
	if _, err := p.srv.Read(buf); err != io.EOF {
		t.Fatalf("second read after close_notify: %v, want EOF", err)
	}
}

func TestCloseWrite(t *testing.T) {
	p := setup(t)
	if _, err := p.srv.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := p.srv.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p.cli)
	if err != nil || string(got) != "last words" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if _, err := p.srv.Write([]byte("more")); err == nil {
		t.Fatal("a write after CloseWrite succeeded")
	}
	// The reading side still works.
	go func() { _, _ = p.cli.Write([]byte("reply")) }()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(p.srv, buf); err != nil || string(buf) != "reply" {
		t.Fatalf("server read %q, %v", buf, err)
	}
}

// TestTamperedRecord: a record that does not authenticate fails the read for good, and the
// client is told bad_record_mac.
func TestTamperedRecord(t *testing.T) {
	p := setup(t)
	echo(t, p, []byte("fine"))
	forged := append([]byte{23, 3, 3, 0, 32}, bytes.Repeat([]byte{0xAA}, 32)...)
	if _, err := p.raw.Write(forged); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	_, err := p.srv.Read(buf)
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("read of a forged record: %v", err)
	}
	if _, again := p.srv.Read(buf); again != err {
		t.Fatalf("the error was not kept: %v", again)
	}
	_, cerr := p.cli.Read(buf)
	if cerr == nil || !strings.Contains(cerr.Error(), "bad record MAC") {
		t.Fatalf("client saw %v, want the bad_record_mac alert", cerr)
	}
}

func TestRecordTypeAfterHandshake(t *testing.T) {
	p := setup(t)
	if _, err := p.raw.Write([]byte{22, 3, 3, 0, 4, 1, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	_, err := p.srv.Read(make([]byte, 8))
	var ae *alertError
	if !errors.As(err, &ae) || ae.alert != alertUnexpectedMessage {
		t.Fatalf("read of a plaintext handshake record: %v", err)
	}
}

// TestParkDropsState: a parked connection holds no AEAD and no buffer (a partial record moves
// aside), and everything works again after.
func TestParkDropsState(t *testing.T) {
	p := setup(t)
	echo(t, p, []byte("warm"))
	p.srv.Park()
	if p.srv.in.dir.aead != nil || p.srv.out.dir.aead != nil || p.srv.in.buf != nil {
		t.Fatal("a parked connection kept its cipher state or buffer")
	}
	echo(t, p, []byte("after park"))

	// A write to a parked connection builds the sending AEAD for itself and drops it again.
	p.srv.Park()
	if _, err := p.srv.Write([]byte("to a parked one")); err != nil {
		t.Fatal(err)
	}
	if p.srv.out.dir.aead != nil {
		t.Fatal("a write while parked kept the AEAD")
	}
	got := make([]byte, len("to a parked one"))
	if _, err := io.ReadFull(p.cli, got); err != nil || string(got) != "to a parked one" {
		t.Fatalf("client read %q, %v", got, err)
	}

	// Half a record arrives, the server's read times out and it parks: the half moves aside.
	rec := sealFrom(t, p, []byte("split in two"))
	if _, err := p.raw.Write(rec[:9]); err != nil {
		t.Fatal(err)
	}
	_ = p.srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 32)
	if _, err := p.srv.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of half a record: %v", err)
	}
	p.srv.Park()
	if p.srv.in.buf != nil || len(p.srv.in.aside) != 9 {
		t.Fatalf("parked with buffer %v and %d bytes aside", p.srv.in.buf != nil, len(p.srv.in.aside))
	}
	if _, err := p.raw.Write(rec[9:]); err != nil {
		t.Fatal(err)
	}
	_ = p.srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.srv.Read(buf)
	if err != nil || string(buf[:n]) != "split in two" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}

// sealFrom makes the client's next application record by hand, with the key the server reads
// with (the client's tls.Conn is then behind by one record, so it sends nothing more).
func sealFrom(t *testing.T, p *pair, data []byte) []byte {
	t.Helper()
	d := p.srv.in.dir // a copy: the server opens it with its own
	d.aead = nil
	var nonce [ivLen]byte
	rec, err := d.seal(nil, typeApplicationData, data, &nonce)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestWouldBlockIsNotSticky: a read on a drained socket that may not wait returns
// netio.ErrWouldBlock, and the next read after bytes arrive succeeds.
func TestWouldBlockIsNotSticky(t *testing.T) {
	p := setup(t)
	pc := p.srv.ParkConn()
	if pc == nil {
		t.Fatal("no ParkConn under a TCP connection")
	}
	pc.SetNoWait(true)
	buf := make([]byte, 8)
	if _, err := p.srv.Read(buf); !netio.IsWouldBlock(err) {
		t.Fatalf("read of a drained socket: %v", err)
	}
	if p.srv.in.buf != nil {
		t.Fatal("a read that found nothing kept the buffer")
	}
	pc.SetNoWait(false)
	echo(t, p, []byte("later"))
}

func TestCloseBeforeHandshake(t *testing.T) {
	addr, conns := listen(t, serverConfig(t))
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	srv := <-conns
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on a closed connection succeeded")
	}
}

// heldConn holds back every write after the first (the ClientHello) until flush, so that the
// client's Finished and its first application data reach the server in one segment.
type heldConn struct {
	net.Conn
	writes int
	held   []byte
}

func (h *heldConn) Write(p []byte) (int, error) {
	if h.writes++; h.writes == 1 {
		return h.Conn.Write(p)
	}
	h.held = append(h.held, p...)
	return len(p), nil
}

func (h *heldConn) flush() error {
	_, err := h.Conn.Write(h.held)
	return err
}

// TestDataReadWithTheFinished: application data that arrives with the client's Finished, read
// ahead during the handshake, is the first this package decrypts.
func TestDataReadWithTheFinished(t *testing.T) {
	addr, conns := listen(t, serverConfig(t))
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldConn{Conn: raw}
	cli := tls.Client(h, clientConfig())
	srv := <-conns
	t.Cleanup(func() { _ = cli.Close(); _ = srv.Close() })
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	_ = srv.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() {
		if err := cli.Handshake(); err != nil {
			errc <- err
			return
		}
		if _, err := cli.Write([]byte("with the finished")); err != nil {
			errc <- err
			return
		}
		errc <- h.flush()
	}()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !srv.TookOver() || srv.in.buf == nil {
		t.Fatal("the application data was not read ahead with the Finished")
	}
	buf := make([]byte, 64)
	n, err := srv.Read(buf)
	if err != nil || string(buf[:n]) != "with the finished" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}
