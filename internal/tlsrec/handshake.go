package tlsrec

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"net"
	"sync"
)

// Config is a TLS server configuration whose connections can take their record layer over.
type Config struct {
	// shell is what tls.Server gets: a copy of the caller's configuration whose
	// GetConfigForClient hands each handshake a configuration of its own, the one it would have
	// had, with a KeyLogWriter that gives the traffic secrets to that connection alone.
	shell *tls.Config
}

// NewConfig wraps cfg (which may have a GetConfigForClient of its own, consulted first).
// Session tickets keep working: a per-connection configuration without ticket keys of its own
// uses the keys of the configuration tls.Server was given, which is long-lived.
func NewConfig(cfg *tls.Config) *Config {
	inner := cfg.GetConfigForClient
	plain := cfg.Clone()
	plain.GetConfigForClient = nil
	shell := cfg.Clone()
	shell.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		base := plain
		if inner != nil {
			got, err := inner(hi)
			if err != nil {
				return nil, err
			}
			if got != nil {
				base = got
			}
		}
		k, ok := hi.Conn.(*capture)
		if !ok {
			return base, nil
		}
		own := base.Clone()
		own.KeyLogWriter = (*keyLog)(k)
		return own, nil
	}
	return &Config{shell: shell}
}

// maxCapture bounds the bytes the server sends during one handshake that are kept for the
// takeover's accounting (certificate chains are a few KiB); a longer handshake stays a tls.Conn.
const maxCapture = 64 << 10

// capture is the socket as crypto/tls sees it during the handshake. It reads ahead into a small
// buffer of its own but hands tls.Conn nothing past the end of the current record, so that
// tls.Conn takes no byte beyond the client's Finished: the client's first application record
// (usually read with the Finished) is then the first this package decrypts, sequence number
// zero. It keeps what the server sends, to count the records sent under the application key;
// and as a KeyLogWriter (keyLog) it receives the traffic secrets. When the connection stays a
// tls.Conn it passes everything through.
type capture struct {
	net.Conn
	c   *Conn
	cfg *Config

	ahead  *aheadBuf // bytes read from the socket, ahead[as:ae] not yet handed on
	as, ae int
	hdr    [headerLen]byte
	hn     int // bytes of hdr handed on
	left   int // bytes of the current record's body still to hand on

	sent     []byte
	overflow bool
	through  bool

	clientSecret, serverSecret []byte
}

// aheadSize is the read-ahead of a handshake: a ClientHello and a client's second flight with
// its first application record fit; longer ones take more reads. It is small because every
// handshake in progress holds one, before the client has proven anything.
const aheadSize = 2048

type aheadBuf [aheadSize]byte

var aheadBufs = sync.Pool{New: func() any { return new(aheadBuf) }}

func (k *capture) Read(p []byte) (int, error) {
	if k.as == k.ae {
		if k.through {
			k.release()
			return k.Conn.Read(p)
		}
		if k.ahead == nil {
			k.ahead = aheadBufs.Get().(*aheadBuf)
		}
		n, err := k.Conn.Read(k.ahead[:])
		k.as, k.ae = 0, n
		if n == 0 {
			return 0, err
		}
	}
	m := min(len(p), k.ae-k.as)
	switch {
	case k.through:
	case k.left == 0:
		m = min(m, headerLen-k.hn)
		copy(k.hdr[k.hn:], k.ahead[k.as:k.as+m])
		if k.hn += m; k.hn == headerLen {
			k.hn, k.left = 0, int(k.hdr[3])<<8|int(k.hdr[4])
		}
	default:
		m = min(m, k.left)
		k.left -= m
	}
	copy(p, k.ahead[k.as:k.as+m])
	k.as += m
	return m, nil
}

// release gives the read-ahead buffer back once nothing is left in it.
func (k *capture) release() {
	if k.ahead != nil && k.as == k.ae {
		aheadBufs.Put(k.ahead)
		k.ahead = nil
	}
}

func (k *capture) Write(p []byte) (int, error) {
	if !k.through && !k.overflow {
		if len(k.sent)+len(p) > maxCapture {
			k.overflow, k.sent = true, nil
		} else {
			k.sent = append(k.sent, p...)
		}
	}
	return k.Conn.Write(p)
}

// keyLog is the capture as the handshake's KeyLogWriter: crypto/tls writes one line per secret,
// "LABEL <client random> <secret>" in hex.
type keyLog capture

func (l *keyLog) Write(line []byte) (int, error) {
	label, rest, _ := bytes.Cut(line, []byte{' '})
	_, secret, _ := bytes.Cut(rest, []byte{' '})
	secret = bytes.TrimSpace(secret)
	var dst *[]byte
	switch string(label) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &l.clientSecret
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &l.serverSecret
	default:
		return len(line), nil
	}
	b := make([]byte, hex.DecodedLen(len(secret)))
	if _, err := hex.Decode(b, secret); err != nil {
		return 0, err
	}
	*dst = b
	return len(line), nil
}

// run runs the handshake and then takes the record layer over, or leaves the connection a
// tls.Conn when the takeover cannot be proven exact.
func (k *capture) run() error {
	tc := tls.Server(k, k.cfg.shell)
	if err := tc.Handshake(); err != nil {
		k.as = k.ae
		k.release()
		return err
	}
	st := tc.ConnectionState()
	c := k.c
	took := k.takeOver(st)
	clear(k.clientSecret)
	clear(k.serverSecret)
	k.clientSecret, k.serverSecret, k.sent, k.through = nil, nil, nil, true
	if !took {
		// tls.Conn reads on through the capture, the bytes read ahead first.
		k.release()
		c.tc = tc
		return nil
	}
	if n := k.ae - k.as; n > 0 {
		// What the client sent after its Finished: the start of the application data.
		c.in.buf = getRecordBuf()
		c.in.end = int32(copy(c.in.buf.b[:], k.ahead[k.as:k.ae]))
		k.as = k.ae
	}
	k.release()
	c.resumed = st.DidResume
	if st.ServerName != "" || st.NegotiatedProtocol != "" || len(st.PeerCertificates) > 0 {
		c.state = &connState{curve: uint16(st.CurveID), serverName: st.ServerName, protocol: st.NegotiatedProtocol,
			peerCertificates: st.PeerCertificates, verifiedChains: st.VerifiedChains}
	}
	return nil
}

// takeOver installs the traffic secrets and reports whether both sequence numbers are known.
func (k *capture) takeOver(st tls.ConnectionState) bool {
	s := suiteByID(st.CipherSuite)
	if st.Version != tls.VersionTLS13 || s == nil || k.clientSecret == nil || k.serverSecret == nil ||
		k.hn != 0 || k.left != 0 || k.overflow {
		return false
	}
	c := k.c
	if c.in.dir.setSecret(s, k.clientSecret) != nil || c.out.dir.setSecret(s, k.serverSecret) != nil {
		return false
	}
	return countSent(&c.out.dir, k.sent)
}

// countSent advances d's sequence number past the records in sent that d's key protects (the
// session tickets crypto/tls sends within the handshake). Each is proven by opening it; they
// must be the last records sent, after the ones under the handshake keys, which do not open.
func countSent(d *direction, sent []byte) bool {
	for len(sent) > 0 {
		if len(sent) < headerLen {
			return false
		}
		n := headerLen + (int(sent[3])<<8 | int(sent[4]))
		if len(sent) < n {
			return false
		}
		rec := sent[:n]
		sent = sent[n:]
		if rec[0] == typeApplicationData && d.opens(rec) {
			continue
		}
		if d.seq > 0 {
			return false
		}
	}
	return true
}

// opens reports whether rec opens under d at its current sequence number, which it then
// advances. rec is decrypted in place.
func (d *direction) opens(rec []byte) bool {
	aead, err := d.cipher()
	if err != nil || len(rec) < headerLen+aead.Overhead() {
		return false
	}
	var nonce [ivLen]byte
	ct := rec[headerLen:]
	if _, err := aead.Open(ct[:0], d.nonce(&nonce), ct, rec[:headerLen]); err != nil {
		return false
	}
	d.seq++
	return true
}
