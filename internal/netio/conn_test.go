package netio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/broker"
)

// events records what a Conn asks of its face.
type events struct {
	nc      net.Conn
	stopped atomic.Int32
	room    chan struct{}
}

func (e *events) StopReading() {
	e.stopped.Add(1)
	WakeReader(e.nc)
}

func (e *events) Room() {
	select {
	case e.room <- struct{}{}:
	default:
	}
}

var testPool = NewBufPool(func() any { return new(int) })

// pair returns a Conn on the server end of a loopback TCP connection, and the client end. rcvbuf,
// when set, shrinks the client's receive buffer so that the server's writes fill the socket.
func pair(t *testing.T, lim Limits, rcvbuf int) (*Conn, *events, net.Conn, *Stats) {
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
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		if rcvbuf == 0 {
			return nil
		}
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
	}}
	client, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	if rcvbuf > 0 {
		_ = server.(*net.TCPConn).SetWriteBuffer(rcvbuf)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	ev := &events{nc: server, room: make(chan struct{}, 1)}
	stats := &Stats{}
	c := &Conn{}
	c.Init(server, &Shared{Lim: lim, Stats: stats, Pool: testPool}, ev)
	return c, ev, client, stats
}

// queue appends b to c's queue as a face would.
func queue(c *Conn, b []byte, via *broker.Batch) {
	c.Lock()
	c.CommitLocked(append(c.BufLocked(), b...), via)
	c.Unlock()
}

func readN(t *testing.T, nc net.Conn, n int) []byte {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(nc, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

// Bytes queued from several goroutines' points of view arrive whole and in order, whether a
// writer goroutine or a reader's batch writes them.
func TestQueuedBytesArriveInOrder(t *testing.T) {
	c, _, client, stats := pair(t, Limits{}, 0)
	var batch broker.Batch
	var want []byte
	for i := range 1000 {
		b := bytes.Repeat([]byte{byte(i)}, i%97+1)
		want = append(want, b...)
		if i%3 == 0 {
			queue(c, b, &batch)
		} else {
			queue(c, b, nil)
		}
		if i%10 == 0 {
			batch.Flush()
		}
	}
	batch.Flush()
	if got := readN(t, client, len(want)); !bytes.Equal(got, want) {
		t.Fatal("bytes arrived damaged or out of order")
	}
	// The writer counts after its write returns, which may be after the client read the bytes.
	for deadline := time.Now().Add(5 * time.Second); stats.BytesOut.Load() != uint64(len(want)); {
		if time.Now().After(deadline) {
			t.Fatalf("BytesOut = %d, want %d", stats.BytesOut.Load(), len(want))
		}
		time.Sleep(time.Millisecond)
	}
}

// A reader's batch write never waits: on a full socket it writes what fits and leaves the rest to
// a writer goroutine, which delivers it once the client reads.
func TestBatchWriteToFullSocketDoesNotBlock(t *testing.T) {
	c, _, client, _ := pair(t, Limits{}, 4096)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, far more than the socket holds
	var batch broker.Batch
	queue(c, big, &batch)
	done := make(chan struct{})
	go func() {
		batch.Flush()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the batch's write blocked on a full socket")
	}
	if got := readN(t, client, len(big)); !bytes.Equal(got, big) {
		t.Fatal("bytes damaged across the hand-over to the writer")
	}
}

// End writes what is queued, then shuts the write side (the client reads the bytes, then EOF) and
// wakes the reader; Finish drains what the client still sends and closes.
func TestEndWritesThenShutsDown(t *testing.T) {
	c, ev, client, _ := pair(t, Limits{Linger: 5 * time.Second}, 0)
	queue(c, []byte("goodbye"), nil)
	c.End(errors.New("done"))
	if got := readN(t, client, 7); string(got) != "goodbye" {
		t.Fatalf("got %q", got)
	}
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last bytes: %v, want EOF", err)
	}
	// The writer shuts the write side and then wakes the reader.
	for deadline := time.Now().Add(5 * time.Second); ev.stopped.Load() != 1 || !c.Stopping(); {
		if time.Now().After(deadline) {
			t.Fatal("the reader was not woken")
		}
		time.Sleep(time.Millisecond)
	}
	if err := c.ArmRead(time.Time{}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ArmRead after the end: %v", err)
	}
	// The client sends more and then closes: Finish discards it and returns at the close.
	if _, err := client.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	go func() {
		c.Finish()
		close(finished)
	}()
	_ = client.Close()
	select {
	case <-finished:
	case <-time.After(4 * time.Second):
		t.Fatal("Finish did not return when the client closed")
	}
}

// A queue past Limits.Hard closes the connection at once and counts a slow consumer.
func TestHardLimitCloses(t *testing.T) {
	c, _, client, stats := pair(t, Limits{Hard: 1024}, 4096)
	c.Lock()
	c.CommitLocked(append(c.BufLocked(), make([]byte, 2048)...), nil)
	closed := c.ClosedLocked()
	c.Unlock()
	if !closed || stats.SlowConsumers.Load() != 1 {
		t.Fatalf("closed %v, slow consumers %d", closed, stats.SlowConsumers.Load())
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, client); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed: %v", err)
	}
}

// A connection closed at once tells its face to stop reading, as an ending one does: a reader
// parked in the Poller is not woken by the close (the socket just leaves the epoll set), so
// without this its connection would never finish.
func TestCloseNowStopsTheReader(t *testing.T) {
	c, ev, _, _ := pair(t, Limits{}, 0)
	c.CloseNow(errors.New("test"))
	if n := ev.stopped.Load(); n != 1 || !c.Stopping() {
		t.Fatalf("StopReading called %d times, Stopping %v; want once, true", n, c.Stopping())
	}
}

// A blocking write that takes longer than Limits.WriteTimeout closes the connection and counts a
// slow consumer.
func TestWriteTimeoutIsASlowConsumer(t *testing.T) {
	c, _, _, stats := pair(t, Limits{WriteTimeout: 200 * time.Millisecond}, 4096)
	queue(c, make([]byte, 4<<20), nil) // the client never reads
	deadline := time.Now().Add(10 * time.Second)
	for stats.SlowConsumers.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stuck write was not timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Lock()
	defer c.Unlock()
	if !c.ClosedLocked() {
		t.Fatal("counted but not closed")
	}
}

// Full refuses at Limits.Soft; when the queue drains the face hears Room. Past Soft/2 the
// connection is congested for at most Limits.Stall, and Drained fires once it falls below.
func TestFullCongestedAndRoom(t *testing.T) {
	c, ev, client, _ := pair(t, Limits{Soft: 64 << 10, Stall: time.Hour}, 4096)
	c.Lock()
	if c.FullLocked() || c.CongestedLocked() {
		t.Fatal("an empty queue is full or congested")
	}
	// Bytes queued but not yet written: the writer is held off by an unflushed batch.
	var batch broker.Batch
	c.CommitLocked(append(c.BufLocked(), make([]byte, 40<<10)...), &batch)
	if c.FullLocked() || !c.CongestedLocked() {
		t.Fatal("at 40 of 64 KiB: want congested, not full")
	}
	c.CommitLocked(append(c.BufLocked(), make([]byte, 40<<10)...), &batch)
	if !c.FullLocked() {
		t.Fatal("at 80 of 64 KiB: not full")
	}
	c.Unlock()
	drained := c.Drained()
	batch.Flush()
	readN(t, client, 80<<10)
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("Drained did not fire")
	}
	select {
	case <-ev.room:
	case <-time.After(5 * time.Second):
		t.Fatal("no Room after the full queue drained")
	}
}

// Full for longer than Limits.SlowTimeout closes the connection.
func TestFullTooLongCloses(t *testing.T) {
	c, _, _, stats := pair(t, Limits{Soft: 1024, SlowTimeout: time.Nanosecond}, 4096)
	var batch broker.Batch // never flushed: the bytes stay queued
	c.Lock()
	defer c.Unlock()
	c.CommitLocked(append(c.BufLocked(), make([]byte, 2048)...), &batch)
	c.FullLocked()
	for !c.ClosedLocked() {
		c.FullLocked()
	}
	if stats.SlowConsumers.Load() != 1 {
		t.Fatalf("slow consumers %d", stats.SlowConsumers.Load())
	}
}
