package tlsrec

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// streamConn reads from a fixed stream and discards what is written.
type streamConn struct {
	net.Conn // nil: only what the record layer uses is implemented
	r        io.Reader
}

func (s *streamConn) Read(p []byte) (int, error)       { return s.r.Read(p) }
func (s *streamConn) Write(p []byte) (int, error)      { return len(p), nil }
func (s *streamConn) SetWriteDeadline(time.Time) error { return nil }
func (s *streamConn) Close() error                     { return nil }

// tookOver returns a Conn past its handshake, reading stream, with fixed traffic secrets.
func tookOver(t testing.TB, id uint16, stream []byte) *Conn {
	c := &Conn{nc: &streamConn{r: bytes.NewReader(stream)}}
	s := suiteByID(id)
	secret := bytes.Repeat([]byte{7}, s.hashLen)
	if err := c.in.dir.setSecret(s, secret); err != nil {
		t.Fatal(err)
	}
	if err := c.out.dir.setSecret(s, secret); err != nil {
		t.Fatal(err)
	}
	c.hsDone.Store(true)
	return c
}

// clientRecords seals records as a client holding the same secret would send them.
func clientRecords(t testing.TB, id uint16, recs ...[2][]byte) []byte {
	c := tookOver(t, id, nil)
	var out []byte
	for _, r := range recs {
		var err error
		var nonce [ivLen]byte
		if out, err = c.in.dir.seal(out, r[0][0], r[1], &nonce); err != nil {
			t.Fatal(err)
		}
		if r[0][0] == typeHandshake {
			if err := c.in.dir.update(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func rec(typ byte, data string) [2][]byte { return [2][]byte{{typ}, []byte(data)} }

func TestRecordsEachSuite(t *testing.T) {
	for _, s := range suites {
		stream := clientRecords(t, s.id, rec(typeApplicationData, "one"), rec(typeApplicationData, ""),
			rec(typeHandshake, "\x18\x00\x00\x01\x01"), rec(typeApplicationData, "two"),
			rec(typeAlert, "\x01\x00"))
		c := tookOver(t, s.id, stream)
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "onetwo" {
			t.Fatalf("suite %s: read %q, %v", tls.CipherSuiteName(s.id), got, err)
		}
		if !c.keyUpdateDue.Load() {
			t.Fatalf("suite %s: the requested key update is not due", tls.CipherSuiteName(s.id))
		}
	}
}

// FuzzReadRecords feeds arbitrary bytes to a connection past its handshake: reading never
// panics and ends in an error or the end of the stream.
func FuzzReadRecords(f *testing.F) {
	id := uint16(tls.TLS_AES_128_GCM_SHA256)
	f.Add(clientRecords(f, id, rec(typeApplicationData, "hello"), rec(typeAlert, "\x01\x00")))
	f.Add(clientRecords(f, id, rec(typeHandshake, "\x18\x00\x00\x01\x00"), rec(typeApplicationData, "after update")))
	f.Add(clientRecords(f, id, rec(typeApplicationData, "x\x00\x00\x00"), rec(typeAlert, "\x02\x14")))
	f.Add(clientRecords(f, id, rec(typeHandshake, "\x04\x00\x00\x00")))
	f.Add([]byte{23, 3, 3, 0x41, 0x01})
	f.Fuzz(func(t *testing.T, stream []byte) {
		c := tookOver(t, id, stream)
		buf := make([]byte, 100)
		for range len(stream) + 1 {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
		t.Fatal("reads went on past the end of the stream")
	})
}
