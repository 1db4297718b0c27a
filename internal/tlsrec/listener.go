package tlsrec

import (
	"crypto/tls"
	"net"
	"sync"

	"github.com/ternmq/tern/internal/netio"
)

type listener struct {
	net.Listener
	cfg *Config
}

// NewListener is tls.NewListener whose connections are Conns over a netio.ParkConn (when the
// socket is TCP or Unix), so that they can park in the poller holding neither buffers nor
// cipher state.
func NewListener(ln net.Listener, cfg *tls.Config) net.Listener {
	return &listener{Listener: ln, cfg: NewConfig(cfg)}
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(netio.NewParkConn(c), l.cfg), nil
}

// recordBuf holds one record as the client may send it, the largest TLS 1.3 allows, and the
// nonce of the record being opened.
type recordBuf struct {
	b     [headerLen + maxCiphertext]byte
	nonce [ivLen]byte
}

var recordBufs = sync.Pool{New: func() any { return new(recordBuf) }}

func getRecordBuf() *recordBuf  { return recordBufs.Get().(*recordBuf) }
func putRecordBuf(b *recordBuf) { recordBufs.Put(b) }

// writeBuf is what Write gathers records in, and the nonce of the record being sealed.
type writeBuf struct {
	b     []byte
	nonce [ivLen]byte
}

// writeBufSize fits what Write gathers before it writes (flushAt) and one more record with a
// key update ahead of it.
const writeBufSize = flushAt + maxRecord + 64

var writeBufs = sync.Pool{New: func() any { return &writeBuf{b: make([]byte, 0, writeBufSize)} }}

func getWriteBuf() *writeBuf  { return writeBufs.Get().(*writeBuf) }
func putWriteBuf(b *writeBuf) { writeBufs.Put(b) }
