package broker

import "sync"

// Batch lets one connection's goroutine write for the connections it delivers to, instead of
// waking a writer goroutine for each delivery.
//
// Waking a goroutine costs a futex call and a context switch, which on a request/reply round trip
// is most of the broker's share of the latency. A face that reads a client on one goroutine gives
// the core a Batch (ConnectRequest.Batch). Sinks handed a delivery on behalf of that client may
// defer their write to it (Defer). The face calls Flush once it has handled what it read and
// before it waits for anything. A burst of messages read together still leaves in one write per
// receiver.
//
// A Batch belongs to one goroutine at a time: the one that calls the Client's Publish, Request
// and Subscribe and then Flush. It holds at most maxBatch sinks; receivers past that start their
// own writers. A message that goes to several receivers carries no batch (route), so a fan-out is
// written by the receivers' writers in parallel.
//
// Every connection holds a Batch, and between its reads it holds nothing: the list of deferred
// sinks comes from a pool at the first Defer and goes back at Flush. A Batch is one pointer, and
// a reader's first write of a wake-up allocates nothing.
type Batch struct {
	pending *flushers
}

// flushers is a Batch's list of deferred sinks.
type flushers struct {
	n    int
	list [maxBatch]Flusher
}

var flusherLists = sync.Pool{New: func() any { return new(flushers) }}

// Flusher is a sink whose write can wait for the end of a batch.
type Flusher interface {
	// FlushNow writes what the sink has pending, as far as the connection takes it without
	// waiting, and leaves the rest to its own writer.
	FlushNow()
}

// maxBatch bounds how many receivers one reader writes for.
const maxBatch = 32

// Defer adds f to the batch and reports whether it was taken; a nil or full batch takes nothing.
func (b *Batch) Defer(f Flusher) bool {
	if b == nil {
		return false
	}
	p := b.pending
	if p == nil {
		p = flusherLists.Get().(*flushers)
		b.pending = p
	}
	if p.n >= maxBatch {
		return false
	}
	p.list[p.n] = f
	p.n++
	return true
}

// Flush writes for every deferred sink and empties the batch, giving its list back.
func (b *Batch) Flush() {
	if b == nil || b.pending == nil {
		return
	}
	p := b.pending
	for i := range p.n {
		f := p.list[i]
		p.list[i] = nil
		f.FlushNow()
	}
	p.n = 0
	b.pending = nil
	flusherLists.Put(p)
}
