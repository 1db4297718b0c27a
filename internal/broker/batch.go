package broker

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
type Batch struct {
	pending []Flusher
}

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
	if b == nil || len(b.pending) >= maxBatch {
		return false
	}
	b.pending = append(b.pending, f)
	return true
}

// Flush writes for every deferred sink and empties the batch.
func (b *Batch) Flush() {
	if b == nil {
		return
	}
	for i, f := range b.pending {
		b.pending[i] = nil
		f.FlushNow()
	}
	b.pending = b.pending[:0]
}
