package broker

import "testing"

type countingFlusher struct{ flushed int }

func (f *countingFlusher) FlushNow() { f.flushed++ }

func TestBatchDefersUpToItsBoundAndFlushesOnce(t *testing.T) {
	var b Batch
	fs := make([]countingFlusher, maxBatch+1)
	for i := range maxBatch {
		if !b.Defer(&fs[i]) {
			t.Fatalf("sink %d refused below the bound", i)
		}
	}
	if b.Defer(&fs[maxBatch]) {
		t.Fatal("a full batch took one more sink; it must start its own writer")
	}
	b.Flush()
	for i := range maxBatch {
		if fs[i].flushed != 1 {
			t.Fatalf("sink %d flushed %d times, want 1", i, fs[i].flushed)
		}
	}
	if fs[maxBatch].flushed != 0 {
		t.Fatal("a refused sink was flushed by the batch")
	}
	if b.pending != nil {
		t.Fatal("a flushed batch kept its list; an idle connection would hold it")
	}
	b.Flush()
	if fs[0].flushed != 1 {
		t.Fatal("a second Flush wrote again for sinks already flushed")
	}
	if !b.Defer(&fs[maxBatch]) {
		t.Fatal("an emptied batch refused a sink")
	}
	var none *Batch
	if none.Defer(&fs[0]) {
		t.Fatal("a nil batch took a sink")
	}
	none.Flush()
}

// A message published through a client with a batch reaches the receiver's sink with that batch,
// at QoS 0 and QoS 1, and one from a client without a batch with none.
func TestDeliveryCarriesThePublishersBatch(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	rxc, rx, _ := connect(t, b, ConnectRequest{ClientID: "rx", CleanStart: true})
	subscribe(t, rxc, SubscribeRequest{Filter: "b/#", QoS: 1})
	var batch Batch
	tx, _, _ := connect(t, b, ConnectRequest{ClientID: "tx", CleanStart: true, Batch: &batch})
	plain, _, _ := connect(t, b, ConnectRequest{ClientID: "plain", CleanStart: true})
	publish(t, tx, "b/1", "q0", 0, false)
	publish(t, tx, "b/2", "q1", 1, false)
	publish(t, plain, "b/3", "plain", 0, false)
	got := rx.deliveries()
	if len(got) != 3 || got[0].Batch != &batch || got[1].Batch != &batch || got[2].Batch != nil {
		t.Fatalf("deliveries %+v: want the publisher's batch on the first two and none on the last", got)
	}
}

// A message that goes to several receivers carries no batch: their own writers write in parallel.
func TestFanOutCarriesNoBatch(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	var rxs []*sink
	for _, id := range []string{"rx1", "rx2"} {
		c, k, _ := connect(t, b, ConnectRequest{ClientID: id, CleanStart: true})
		subscribe(t, c, SubscribeRequest{Filter: "f/#"})
		rxs = append(rxs, k)
	}
	var batch Batch
	tx, _, _ := connect(t, b, ConnectRequest{ClientID: "tx", CleanStart: true, Batch: &batch})
	publish(t, tx, "f/1", "x", 0, false)
	for i, k := range rxs {
		got := k.deliveries()
		if len(got) != 1 || got[0].Batch != nil {
			t.Fatalf("receiver %d: %+v, want one delivery without a batch", i, got)
		}
	}
}
