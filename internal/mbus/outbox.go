package mbus

import (
	"encoding/json"
	"errors"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/netio"
)

// frameBufs pools the connections' output buffers; mBus encodes through no scratch.
var frameBufs = netio.NewBufPool(nil)

// send queues a message. via is the batch of the reader whose input caused it (nil from other
// goroutines). A client whose queue would pass cfg.OutBufferBytes is not reading and is closed
// (mBus keeps unbounded lists; tern does not).
func (c *conn) send(m Message, via *broker.Batch) {
	b, _ := json.Marshal(m)
	c.mu.Lock()
	z := c.zlib
	c.mu.Unlock()
	var compressed []byte
	if z {
		compressed = appendFrame(nil, b, true)
	}
	o := &c.out
	o.Lock()
	if o.EndingLocked() {
		o.Unlock()
		return
	}
	if o.QueuedLocked()+len(b)+len(compressed)+4 > c.srv.cfg.OutBufferBytes {
		o.Unlock()
		c.srv.stats.SlowDrops.Add(1)
		c.close("internal_error")
		return
	}
	buf := o.BufLocked()
	if z {
		buf = append(buf, compressed...)
	} else {
		buf = appendFrame(buf, b, false)
	}
	o.CommitLocked(buf, via)
	o.Unlock()
}

// closeAfter ends the connection with reason once what is queued (a refusal) has been written.
func (c *conn) closeAfter(reason string) {
	c.setWhy(reason)
	c.out.End(errors.New(reason))
}

// StopReading implements netio.Events.
func (c *conn) StopReading() { netio.WakeReader(c.nc) }

// Room implements netio.Events; mBus never refuses a message for lack of room.
func (c *conn) Room() {}
