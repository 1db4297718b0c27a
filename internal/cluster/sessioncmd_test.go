package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/store"
)

func sampleRecord() store.SessionRecord {
	return store.SessionRecord{ClientID: "c", Identity: "alice", Expiry: 60, Disconnected: -5, Dropped: 3,
		Subscriptions: []store.Subscription{{Filter: "a/#", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 9}},
		Will:          &store.Will{Delay: 4, Msg: sampleMessage()}}
}

func sampleItem() store.Item {
	return store.Item{Msg: sampleMessage(), QoS: 2, Retain: true, SubIDs: []uint32{1, 70000}, Seq: 12}
}

// sampleSessionCommands has one session command of every kind, ops of every kind included.
func sampleSessionCommands() [][]byte {
	rec := appendRecord(nil, sampleRecord())
	item := appendItem(nil, sampleItem())
	ops := appendStr([]byte{cmdOps}, "n1")
	ops = appendBytes(appendOpHead(ops, opRecord, "c", 5), rec)
	ops = appendOpHead(ops, opDelete, "c", 5)
	ops = appendOpHead(ops, opForget, "c", 6)
	ops = appendBytes(binary.AppendUvarint(appendOpHead(ops, opQPut, "c", 5), 1), item)
	ops = binary.AppendUvarint(appendOpHead(ops, opQDel, "c", 5), 1)
	ops = binary.AppendUvarint(appendOpHead(ops, opQClear, "c", 5), 2)
	ops = binary.AppendUvarint(appendOpHead(ops, opFPut, "c", 5), 65535)
	ops = appendBytes(append(binary.AppendUvarint(ops, 3), 1), item)
	ops = binary.AppendUvarint(appendOpHead(ops, opFDel, "c", 5), 7)
	ops = binary.AppendUvarint(appendOpHead(ops, opNAdd, "c", 5), 8)
	ops = binary.AppendUvarint(appendOpHead(ops, opNDel, "c", 5), 8)
	bare := sampleRecord()
	bare.Subscriptions = nil
	ops = appendBytes(appendOpHead(ops, opRecordApart, "c", 5), appendRecord(nil, bare))
	ops = append(appendOpHead(ops, opSubPut, "c", 5), appendSubs(nil, sampleRecord().Subscriptions)...)
	ops = append(appendOpHead(ops, opSubDel, "c", 5), appendStrs(nil, []string{"a/#", "b"})...)
	return [][]byte{
		encodeClaim("c", "n1", 42, "alice", claimClean|claimExclusive),
		ops,
		encodeAdopt("n3", []string{"n1", "n2"}),
		encodeNodeUp("n2", 43),
	}
}

func TestSessionEncodingsRoundTrip(t *testing.T) {
	rec, err := decodeRecord(appendRecord(nil, sampleRecord()))
	want := sampleRecord()
	want.ClientID = ""
	if err != nil || fmt.Sprint(rec.Subscriptions) != fmt.Sprint(want.Subscriptions) || rec.Identity != "alice" ||
		rec.Expiry != 60 || rec.Disconnected != -5 || rec.Dropped != 3 || rec.Will == nil || rec.Will.Delay != 4 ||
		rec.Will.Msg.Sender != "alice" || rec.Will.Msg.ID != 7 {
		t.Fatalf("record %+v %v", rec, err)
	}
	noWill := sampleRecord()
	noWill.Will = nil
	if rec, err := decodeRecord(appendRecord(nil, noWill)); err != nil || rec.Will != nil {
		t.Fatalf("record without a will: %+v %v", rec, err)
	}
	it, err := decodeItem(appendItem(nil, sampleItem()))
	if err != nil || it.QoS != 2 || !it.Retain || fmt.Sprint(it.SubIDs) != "[1 70000]" || it.Seq != 12 ||
		!bytes.Equal(it.Msg.Payload, []byte("pay")) || it.Msg.ID != 7 {
		t.Fatalf("item %+v %v", it, err)
	}
	for _, cmd := range sampleSessionCommands() {
		c, err := decodeCommand(cmd)
		if err != nil {
			t.Fatalf("command %d: %v", cmd[0], err)
		}
		if c.Kind == cmdOps && (len(c.Ops) != 13 || c.Ops[6].N != 65535 || c.Ops[6].Ord != 3 || !c.Ops[6].Released ||
			c.Ops[10].Rec == nil || c.Ops[10].Rec.Identity != "alice" ||
			fmt.Sprint(c.Ops[11].Subs) != fmt.Sprint(sampleRecord().Subscriptions) || fmt.Sprint(c.Ops[12].Filters) != "[a/# b]") {
			t.Fatalf("ops %+v", c.Ops)
		}
		for i := 1; i < len(cmd); i++ {
			if _, err := decodeCommand(cmd[:i]); err == nil && cmd[0] != cmdOps {
				t.Fatalf("command %d cut at %d decoded", cmd[0], i)
			}
		}
	}
	// A packet id beyond 16 bits, an unknown op, a bad flag: refused.
	bad := binary.AppendUvarint(appendOpHead(appendStr([]byte{cmdOps}, "n1"), opFDel, "c", 1), 1<<16)
	if _, err := decodeCommand(bad); err == nil {
		t.Fatal("a 17-bit packet id decoded")
	}
	if _, err := decodeCommand(appendOpHead(appendStr([]byte{cmdOps}, "n1"), 99, "c", 1)); err == nil {
		t.Fatal("an unknown op decoded")
	}
	// A record sent apart from its subscriptions that carries some, an empty filter: refused.
	withSubs := appendBytes(appendOpHead(appendStr([]byte{cmdOps}, "n1"), opRecordApart, "c", 1), appendRecord(nil, sampleRecord()))
	if _, err := decodeCommand(withSubs); err == nil {
		t.Fatal("a record apart from its subscriptions decoded with subscriptions")
	}
	emptyFilter := append(appendOpHead(appendStr([]byte{cmdOps}, "n1"), opSubDel, "c", 1), appendStrs(nil, []string{""})...)
	if _, err := decodeCommand(emptyFilter); err == nil {
		t.Fatal("an empty filter decoded")
	}
	if _, err := decodeCommand(encodeClaim("c", "n", 1, "", 4)); err == nil {
		t.Fatal("an unknown claim flag decoded")
	}
}

// memFSM is a state machine on a Pebble database in memory.
func memFSM(t testing.TB) *fsm {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	f, err := newFSM(db, slog.New(slog.DiscardHandler), "n1")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// sampleSnapshot is a snapshot with a session in it.
func sampleSnapshot(t testing.TB) []byte {
	f := memFSM(t)
	for i, cmd := range sampleSessionCommands()[:1] {
		c, _ := decodeCommand(cmd)
		_ = f.applySession(c, uint64(i+1))
	}
	b := f.db.NewBatch()
	_ = b.Set(queueKey("c", 1), appendItem(nil, sampleItem()), nil)
	_ = b.Set(recKey("c"), appendRecord(nil, sampleRecord()), nil)
	_ = b.Commit(pebble.NoSync)
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	var buf bytes.Buffer
	if err := s.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotRestoresSessions(t *testing.T) {
	snap := sampleSnapshot(t)
	f := memFSM(t)
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	e, ok := f.dir.get("c")
	if !ok || e.owner != "n1" || !e.record || fmt.Sprint(e.filters) != "[a/#]" {
		t.Fatalf("entry after a restore: %+v %v", e, ok)
	}
	if len(f.dir.index.Match("a/b").Entries) != 1 {
		t.Fatal("the restored session's subscription is not in the directory's interest")
	}
	if _, closer, err := f.db.Get(queueKey("c", 1)); err != nil {
		t.Fatalf("queued item after a restore: %v", err)
	} else {
		_ = closer.Close()
	}
	for i := range snap {
		if err := memFSM(t).Restore(io.NopCloser(bytes.NewReader(snap[:i]))); err == nil {
			t.Fatalf("a snapshot cut at %d restored", i)
		}
	}
}

// FuzzSessionDecode: session commands, records, items and directory entries from the log, and
// snapshots from another node, never crash their decoders.
func FuzzSessionDecode(f *testing.F) {
	for _, c := range sampleSessionCommands() {
		f.Add(c)
	}
	f.Add(appendRecord(nil, sampleRecord()))
	f.Add(appendItem(nil, sampleItem()))
	f.Add(appendEntry(nil, &dirEntry{owner: "n1", since: 3, last: 4, inc: 5, identity: "a"}))
	f.Add(sampleSnapshot(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeCommand(b)
		_, _ = decodeRecord(b)
		_, _ = decodeItem(b)
		_, _ = decodeEntry(b)
		if len(b) > 0 && b[0] == snapshotV2 {
			_ = memFSM(t).Restore(io.NopCloser(bytes.NewReader(b)))
		}
	})
}
