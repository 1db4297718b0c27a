package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/message"
)

// A snapshot is the whole replicated state: records and retained messages as one encoded state
// (appendState), then every key of the session directory and replica as it is in the database.
// The session part can be large (queues), so it is streamed from a Pebble snapshot taken when
// raft asked for it, and restored in batches, never held in memory whole.
//
//	byte 2, uvarint applied index, bytes state, then pairs of bytes key and bytes value, ended by
//	an empty key.
//
// A snapshot of the first stage (byte 1 and a state) still restores, with no sessions.
const snapshotV2 = 2

// restoreBatch is how many bytes of session keys a restore writes at once.
const restoreBatch = 4 << 20

// Snapshot implements raft.FSM: the state is read now (raft applies nothing meanwhile) and
// written out later by Persist, which may run while raft applies more.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	// Raft drops the log up to this point once the snapshot is kept; what was applied from it
	// must be on disk first, since a restart does not restore the snapshot (see fsm.go).
	if err := f.sync(); err != nil {
		return nil, fmt.Errorf("cluster: syncing before a snapshot: %w", err)
	}
	recs, err := f.records()
	if err != nil {
		return nil, err
	}
	var ret []*message.Message
	if f.core != nil {
		ret = f.core.RetainedAll()
	}
	head := binary.AppendUvarint([]byte{snapshotV2}, f.appliedIndex())
	head = appendBytes(head, appendState(nil, state{Records: recs, Retained: ret}))
	return &fsmSnapshot{head: head, snap: f.db.NewSnapshot()}, nil
}

// fsmSnapshot is a state waiting to be persisted.
type fsmSnapshot struct {
	head []byte
	snap *pebble.Snapshot
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(sink io.Writer) error {
	w := bufio.NewWriterSize(sink, 256<<10)
	if _, err := w.Write(s.head); err != nil {
		return err
	}
	var scratch []byte
	for _, p := range sessionPrefixes {
		it, err := s.snap.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				_ = it.Close()
				return err
			}
			scratch = appendBytes(appendBytes(scratch[:0], it.Key()), v)
			if _, err := w.Write(scratch); err != nil {
				_ = it.Close()
				return err
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	if _, err := w.Write([]byte{0}); err != nil {
		return err
	}
	return w.Flush()
}

func (s *fsmSnapshot) Release() { _ = s.snap.Close() }

// Restore implements raft.FSM: the state becomes the snapshot's (a node that fell too far
// behind, or joined late). A live node's core then lets go of the sessions it no longer holds
// and takes up those it now does.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 256<<10)
	version, err := r.ReadByte()
	if err != nil {
		return err
	}
	var s state
	var applied uint64
	switch version {
	case snapshotVersion: // the first stage's: the rest is the state
		rest, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if s, err = decodeState(append([]byte{version}, rest...)); err != nil {
			return err
		}
	case snapshotV2:
		if applied, err = binary.ReadUvarint(r); err != nil {
			return fmt.Errorf("%w: snapshot: %w", errFrame, err)
		}
		raw, err := readBytes(r, 1<<40)
		if err != nil {
			return err
		}
		if s, err = decodeState(raw); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: snapshot version %d", errFrame, version)
	}
	batch := f.db.NewBatch()
	_ = batch.DeleteRange([]byte{prefixRecord}, []byte{prefixRecord + 1}, nil)
	for _, p := range sessionPrefixes {
		_ = batch.DeleteRange([]byte{p}, []byte{p + 1}, nil)
	}
	for _, rec := range s.Records {
		_ = batch.Set(recordKey(rec.NS, rec.Key), rec.Value, nil)
	}
	if version == snapshotV2 {
		if batch, err = f.restoreSessions(r, batch); err != nil {
			return err
		}
		_ = batch.Set([]byte{prefixApplied}, binary.BigEndian.AppendUint64(nil, applied), nil)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return err
	}
	if err := f.dir.load(f.db); err != nil {
		return err
	}
	f.setApplied(applied)
	for _, rec := range s.Records {
		f.notify(rec.NS)
	}
	if f.core != nil {
		if err := f.core.ReplaceRetained(s.Retained); err != nil {
			return err
		}
	}
	f.reconcile(applied)
	return nil
}

// restoreSessions writes the session keys of a snapshot, committing full batches on the way
// (without sync: the last commit syncs, and a restore cut short is done again).
func (f *fsm) restoreSessions(r *bufio.Reader, batch *pebble.Batch) (*pebble.Batch, error) {
	for {
		k, err := readBytes(r, 1<<20)
		if err != nil {
			return nil, err
		}
		if len(k) == 0 {
			return batch, nil
		}
		v, err := readBytes(r, 1<<32)
		if err != nil {
			return nil, err
		}
		if !isSessionKey(k) {
			return nil, fmt.Errorf("%w: snapshot key %x", errFrame, k)
		}
		_ = batch.Set(k, v, nil)
		if batch.Len() >= restoreBatch {
			if err := batch.Commit(pebble.NoSync); err != nil {
				return nil, err
			}
			batch = f.db.NewBatch()
		}
	}
}

func isSessionKey(k []byte) bool {
	for _, p := range sessionPrefixes {
		if k[0] == p {
			return true
		}
	}
	return false
}

// readBytes reads a uvarint length and that many bytes, refusing more than limit; the buffer
// grows with what arrives.
func readBytes(r *bufio.Reader, limit uint64) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot: %w", errFrame, err)
	}
	if n > limit {
		return nil, fmt.Errorf("%w: snapshot field of %d bytes", errFrame, n)
	}
	var out []byte
	for uint64(len(out)) < n {
		k := min(n-uint64(len(out)), 1<<20)
		start := len(out)
		out = append(out, make([]byte, k)...)
		if _, err := io.ReadFull(r, out[start:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("%w: snapshot: %w", errFrame, err)
		}
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// reconcile makes a live node's core hold exactly the sessions the directory gives it, after a
// snapshot replaced the state (at index at).
func (f *fsm) reconcile(at uint64) {
	if f.host == nil || !f.live.Load() {
		return
	}
	owned := f.dir.ownedBy(f.self)
	for _, client := range f.host.held() {
		if !owned[client] {
			if e, ok := f.dir.get(client); ok {
				f.released.add(at, e.filters)
			}
			f.host.release(client)
		}
	}
	held := map[string]bool{}
	for _, client := range f.host.held() {
		held[client] = true
	}
	for client, persistent := range owned {
		if persistent && !held[client] {
			if err := f.host.adopt(client); err != nil {
				f.log.Error("cluster: taking up a session failed", "client", client, "err", err)
			}
		}
	}
}
