// Package tlsrec serves TLS 1.3 connections whose record layer sheds its cipher state while the
// connection is idle. crypto/tls runs the handshake; once it is over, the connection's traffic
// secrets (from the configuration's KeyLogWriter, per connection) move into a record layer of
// this package, and the tls.Conn with its buffers and two AEAD instances (about 3.5 KiB in all)
// is dropped. A parked connection (Park) then holds its keys and sequence numbers only: the AEADs
// are built again when bytes arrive or a message leaves.
//
// Whenever the takeover cannot be proven exact (TLS 1.2, a cipher suite it does not know, a
// handshake it cannot account for record by record), the connection stays a plain tls.Conn: a
// sequence number is never guessed, since a reused AEAD nonce would break the cipher.
package tlsrec

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/netio"
)

// Conn is a server-side TLS connection. It is safe for one reader and one writer at a time,
// concurrently with each other, as tls.Conn is.
type Conn struct {
	nc net.Conn // the socket; a *netio.ParkConn when it can park

	hs    *capture  // the handshake's view of the socket, until it is over
	tc    *tls.Conn // set when the connection stays a tls.Conn
	hsErr error
	// state holds what a taken-over connection reports beyond its version and suite, when
	// there is any (a server name, ALPN, client certificates).
	state  *connState
	hsMu   sync.Mutex
	hsDone atomic.Bool
	// parked is set by Park and cleared by the next Read: a Write while it is set drops the
	// sending AEAD again when it is done.
	parked atomic.Bool
	// keyUpdateDue: the client asked for a KeyUpdate; the next Write sends it first.
	keyUpdateDue atomic.Bool
	// activeCall counts Writes in flight; bit 0 says Close was called (tls.Conn's interlock).
	activeCall atomic.Int32
	resumed    bool

	in  inHalf
	out outHalf
}

// inHalf is the reading side. Offsets are int32 (a buffer holds one record): every idle
// connection carries them.
type inHalf struct {
	mu  sync.Mutex
	dir direction
	err error // sticky
	// buf is a pooled buffer while bytes are held (nil otherwise). Received bytes not yet
	// decrypted are buf[raw:end]; the decrypted content of the last record not yet read is
	// buf[plain:plainEnd].
	buf             *recordBuf
	aside           []byte // a parked connection's partial record (buf is nil then)
	plain, plainEnd int32
	raw, end        int32
	uselessRecords  uint8
}

type outHalf struct {
	mu          sync.Mutex
	dir         direction
	err         error // sticky
	closeNotify bool  // close_notify sent: nothing more may be written
}

// connState is what ConnectionState reports once the record layer took over, besides the
// version, suite and resumption.
type connState struct {
	curve                uint16
	serverName, protocol string
	peerCertificates     []*x509.Certificate
	verifiedChains       [][]*x509.Certificate
}

// Server returns a connection that runs the TLS handshake of cfg over nc on its first Read or
// Write. cfg comes from NewConfig.
func Server(nc net.Conn, cfg *Config) *Conn {
	c := &Conn{nc: nc}
	c.hs = &capture{Conn: nc, c: c, cfg: cfg}
	return c
}

// Handshake runs the handshake if it has not run yet.
func (c *Conn) Handshake() error {
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsErr = c.hs.run()
	c.hs = nil
	c.hsDone.Store(true)
	return c.hsErr
}

// Read reads application data.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if c.tc != nil {
		return c.tc.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	in := &c.in
	in.mu.Lock()
	defer in.mu.Unlock()
	if c.parked.Load() {
		c.parked.Store(false) // written only when set: every Write reads it
	}
	for {
		if in.err != nil {
			return 0, in.err
		}
		if in.plain < in.plainEnd {
			n := copy(p, in.buf.b[in.plain:in.plainEnd])
			in.plain += int32(n)
			return n, nil
		}
		ok, err := c.nextRecord()
		if err != nil {
			return 0, c.readFailed(err)
		}
		if !ok {
			if err := c.fill(); err != nil {
				return 0, c.readFailed(err)
			}
		}
	}
}

// maxUselessRecords bounds the records in a row that carry nothing to read (empty ones, key
// updates), as crypto/tls does.
const maxUselessRecords = 16

// nextRecord decrypts and handles the next complete record held, and reports whether there
// was one.
func (c *Conn) nextRecord() (bool, error) {
	in := &c.in
	if in.buf == nil || in.end-in.raw < headerLen {
		return false, nil
	}
	n, err := recordHeader(in.buf.b[in.raw : in.raw+headerLen])
	if err != nil {
		return false, err
	}
	if int(in.end-in.raw) < headerLen+n {
		return false, nil
	}
	start := in.raw
	in.raw += int32(headerLen + n)
	typ, content, err := in.dir.open(in.buf.b[start:in.raw], &in.buf.nonce)
	if err != nil {
		return false, err
	}
	switch typ {
	case typeApplicationData:
		if len(content) > 0 {
			in.plain, in.plainEnd = start+headerLen, start+headerLen+int32(len(content))
			in.uselessRecords = 0
			return true, nil
		}
	case typeAlert:
		if len(content) != 2 {
			return false, &alertError{alertDecodeError, "malformed alert"}
		}
		if content[1] == alertCloseNotify {
			return false, io.EOF
		}
		return false, remoteAlert(content[1])
	case typeHandshake:
		// After the handshake a client may send only KeyUpdate, which ends its record.
		if len(content) != 5 || content[0] != handshakeKeyUpdate || content[1] != 0 || content[2] != 0 || content[3] != 1 || content[4] > 1 {
			return false, &alertError{alertUnexpectedMessage, "unexpected handshake message after the handshake"}
		}
		if err := in.dir.update(); err != nil {
			return false, err
		}
		if content[4] == 1 {
			c.keyUpdateDue.Store(true)
		}
	default:
		return false, &alertError{alertUnexpectedMessage, "unexpected record content type"}
	}
	in.uselessRecords++
	if in.uselessRecords > maxUselessRecords {
		return false, &alertError{alertUnexpectedMessage, "too many records without data"}
	}
	return true, nil
}

// fill reads more of the socket into the buffer; a read that brings nothing gives the buffer
// back when it holds nothing else.
func (c *Conn) fill() error {
	in := &c.in
	if in.buf == nil {
		in.buf = getRecordBuf()
		in.end = int32(copy(in.buf.b[:], in.aside))
		in.raw, in.aside = 0, nil
	} else if in.raw > 0 {
		// Only a partial record is held: move it to the front to make room for its rest.
		in.end = int32(copy(in.buf.b[:], in.buf.b[in.raw:in.end]))
		in.raw = 0
	}
	in.plain, in.plainEnd = 0, 0
	n, err := c.nc.Read(in.buf.b[in.end:])
	in.end += int32(n)
	if n > 0 {
		return nil
	}
	if in.end == 0 {
		in.release()
	}
	switch {
	case err == io.EOF && in.end > in.raw:
		return io.ErrUnexpectedEOF
	case err == nil:
		return io.ErrNoProgress
	}
	return err
}

// readFailed makes err sticky unless it is temporary (a deadline, a drained socket), and sends
// the alert a protocol error calls for.
func (c *Conn) readFailed(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	in := &c.in
	in.err = err
	in.release()
	in.aside = nil
	in.dir.aead = nil
	var ae *alertError
	if errors.As(err, &ae) {
		c.sendAlert(ae.alert)
	}
	return err
}

func (in *inHalf) release() {
	if in.buf != nil {
		putRecordBuf(in.buf)
		in.buf = nil
	}
	in.raw, in.end, in.plain, in.plainEnd = 0, 0, 0, 0
}

// maxAside is the most bytes of a partial record a parked connection moves out of the pooled
// buffer; with more it keeps the buffer.
const maxAside = 512

// Park is called when the connection's reader stops waiting for it (it parks in a poller): the
// connection drops its AEADs and, holding no more than a small partial record, its read buffer.
// The next Read or Write builds what it needs again.
func (c *Conn) Park() {
	if !c.hsDone.Load() || c.tc != nil {
		return
	}
	c.parked.Store(true)
	in := &c.in
	in.mu.Lock()
	if in.plain >= in.plainEnd {
		in.dir.aead = nil
		if n := in.end - in.raw; in.buf != nil && n <= maxAside {
			if n > 0 {
				in.aside = append([]byte(nil), in.buf.b[in.raw:in.end]...)
			}
			in.release()
		}
	}
	in.mu.Unlock()
	if c.out.mu.TryLock() {
		// A Write in flight drops it itself, seeing parked.
		c.out.dir.aead = nil
		c.out.mu.Unlock()
	}
}

// Write writes application data.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if c.tc != nil {
		return c.tc.Write(p)
	}
	for {
		x := c.activeCall.Load()
		if x&1 != 0 {
			return 0, net.ErrClosed
		}
		if c.activeCall.CompareAndSwap(x, x+2) {
			break
		}
	}
	defer c.activeCall.Add(-2)
	out := &c.out
	out.mu.Lock()
	defer out.mu.Unlock()
	n, err := c.writeLocked(p)
	if c.parked.Load() {
		out.dir.aead = nil
	}
	return n, err
}

// keyUpdateAfter is how many records are sent under one key before the connection moves to the
// next (RFC 8446, 5.5: AES-GCM may protect about 2^24.5 full records per key).
var keyUpdateAfter uint64 = 1 << 24

// flushAt: records are gathered into one socket write until this many bytes are pending.
const flushAt = 2 * maxRecord

func (c *Conn) writeLocked(p []byte) (int, error) {
	out := &c.out
	if out.err != nil {
		return 0, out.err
	}
	if out.closeNotify {
		return 0, errShutdown
	}
	buf := getWriteBuf()
	defer putWriteBuf(buf)
	b := buf.b[:0]
	var err error
	if c.keyUpdateDue.Swap(false) {
		if b, err = c.sealKeyUpdate(b, false, &buf.nonce); err != nil {
			return 0, c.writeFailed(err)
		}
	}
	written, sealed := 0, 0
	for sealed < len(p) {
		if out.dir.seq >= keyUpdateAfter {
			if b, err = c.sealKeyUpdate(b, true, &buf.nonce); err != nil {
				return written, c.writeFailed(err)
			}
		}
		m := min(len(p)-sealed, maxPlaintext)
		if b, err = out.dir.seal(b, typeApplicationData, p[sealed:sealed+m], &buf.nonce); err != nil {
			return written, c.writeFailed(err)
		}
		sealed += m
		if len(b) >= flushAt || sealed == len(p) {
			if _, err := c.nc.Write(b); err != nil {
				return written, c.writeFailed(err)
			}
			written, b = sealed, b[:0]
		}
	}
	if len(b) > 0 { // a key update alone
		if _, err := c.nc.Write(b); err != nil {
			return written, c.writeFailed(err)
		}
	}
	buf.b = b[:0]
	return written, nil
}

// sealKeyUpdate appends a KeyUpdate under the current key and moves the sending side to the
// next one.
func (c *Conn) sealKeyUpdate(b []byte, request bool, nonce *[ivLen]byte) ([]byte, error) {
	msg := [5]byte{handshakeKeyUpdate, 0, 0, 1, 0}
	if request {
		msg[4] = 1
	}
	b, err := c.out.dir.seal(b, typeHandshake, msg[:], nonce)
	if err != nil {
		return b, err
	}
	return b, c.out.dir.update()
}

// writeFailed makes a write error sticky: part of a record may have left, so nothing after it
// could be read.
func (c *Conn) writeFailed(err error) error {
	c.out.err = err
	c.out.dir.aead = nil
	return err
}

var errShutdown = errors.New("tls: protocol is shutdown")

// alertWait bounds the write of an alert, which the connection sends as it gives up.
const alertWait = time.Second

// sendAlert sends a fatal alert if no Write is in progress (the connection fails anyway).
func (c *Conn) sendAlert(alert byte) {
	if !c.out.mu.TryLock() {
		return
	}
	defer c.out.mu.Unlock()
	c.sendAlertLocked(2, alert)
}

func (c *Conn) sendAlertLocked(level, alert byte) error {
	out := &c.out
	if out.err != nil || out.closeNotify {
		return out.err
	}
	if alert == alertCloseNotify {
		out.closeNotify = true
	}
	var arr [headerLen + 2 + 1 + tagLen]byte
	var nonce [ivLen]byte
	b, err := out.dir.seal(arr[:0], typeAlert, []byte{level, alert}, &nonce)
	if err == nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(alertWait))
		_, err = c.nc.Write(b)
	}
	if err != nil {
		return c.writeFailed(err)
	}
	return nil
}

// Close sends close_notify (unless a Write is in progress: then Close is breaking it) and
// closes the socket.
func (c *Conn) Close() error {
	var x int32
	for {
		x = c.activeCall.Load()
		if x&1 != 0 {
			return net.ErrClosed
		}
		if c.activeCall.CompareAndSwap(x, x|1) {
			break
		}
	}
	done := c.hsDone.Load()
	if done && c.tc != nil {
		return c.tc.Close()
	}
	if x == 0 && done && c.hsErr == nil && c.out.mu.TryLock() {
		_ = c.sendAlertLocked(1, alertCloseNotify)
		c.out.mu.Unlock()
	}
	return c.nc.Close()
}

// CloseWrite sends close_notify and shuts the socket's sending side: the client reads the end
// of the stream after everything written before.
func (c *Conn) CloseWrite() error {
	if !c.hsDone.Load() || c.hsErr != nil {
		return errors.New("tls: CloseWrite called before handshake complete")
	}
	if c.tc != nil {
		return c.tc.CloseWrite()
	}
	c.out.mu.Lock()
	err := c.sendAlertLocked(1, alertCloseNotify)
	c.out.mu.Unlock()
	if err != nil {
		return err
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ConnectionState reports the negotiated parameters (the zero state before the handshake). A
// taken-over connection that sent no server name, ALPN or certificate reports no CurveID.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if !c.hsDone.Load() {
		return tls.ConnectionState{}
	}
	if c.tc != nil {
		return c.tc.ConnectionState()
	}
	if c.hsErr != nil {
		return tls.ConnectionState{}
	}
	cs := tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, DidResume: c.resumed,
		CipherSuite: c.out.dir.suite().id} // the suite is set once, at the takeover
	if s := c.state; s != nil {
		cs.CurveID, cs.ServerName, cs.NegotiatedProtocol = tls.CurveID(s.curve), s.serverName, s.protocol
		cs.PeerCertificates, cs.VerifiedChains = s.peerCertificates, s.verifiedChains
	}
	return cs
}

// ParkConn is the socket when it can park in the poller (nil otherwise).
func (c *Conn) ParkConn() *netio.ParkConn {
	p, _ := c.nc.(*netio.ParkConn)
	return p
}

// TookOver reports whether the connection's records go through this package (false: through
// crypto/tls, or before the handshake).
func (c *Conn) TookOver() bool { return c.hsDone.Load() && c.hsErr == nil && c.tc == nil }

func (c *Conn) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }
