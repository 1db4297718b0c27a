package raftstore

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

func open(t *testing.T, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open("raft", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func entry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 3, Type: raft.LogCommand, Data: []byte{byte(i), 'x'},
		Extensions: []byte("ext"), AppendedAt: time.Unix(1700000000, int64(i))}
}

func indexes(t *testing.T, s *Store) (first, last uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	must(t, err)
	last, err = s.LastIndex()
	must(t, err)
	return first, last
}

// TestLogStore follows raft's expectations of a LogStore (as raft-boltdb's tests state them):
// FirstIndex and LastIndex are 0 on an empty log, GetLog of a missing index is ErrLogNotFound,
// StoreLogs stores a batch, DeleteRange removes both ends included, and everything survives a
// reopen.
func TestLogStore(t *testing.T) {
	fs := vfs.NewMem()
	s := open(t, fs)
	if f, l := indexes(t, s); f != 0 || l != 0 {
		t.Fatalf("empty log: first %d last %d", f, l)
	}
	var got raft.Log
	if err := s.GetLog(1, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on empty log: %v", err)
	}
	must(t, s.StoreLog(entry(1)))
	must(t, s.StoreLogs([]*raft.Log{entry(2), entry(3), entry(4), entry(5)}))
	if f, l := indexes(t, s); f != 1 || l != 5 {
		t.Fatalf("first %d last %d, want 1 and 5", f, l)
	}
	must(t, s.GetLog(3, &got))
	want := entry(3)
	if got.Index != 3 || got.Term != 3 || got.Type != raft.LogCommand || !bytes.Equal(got.Data, want.Data) ||
		!bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
		t.Fatalf("GetLog(3) = %+v, want %+v", got, want)
	}
	// Overwriting an index (a follower truncating a conflicting suffix) replaces it.
	over := entry(5)
	over.Term = 4
	must(t, s.StoreLog(over))
	must(t, s.GetLog(5, &got))
	if got.Term != 4 {
		t.Fatalf("overwritten entry has term %d", got.Term)
	}
	// Deleting a prefix (after a snapshot) and a suffix (a conflict).
	must(t, s.DeleteRange(1, 2))
	if f, l := indexes(t, s); f != 3 || l != 5 {
		t.Fatalf("after DeleteRange(1,2): first %d last %d", f, l)
	}
	if err := s.GetLog(2, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("deleted entry: %v", err)
	}
	must(t, s.DeleteRange(5, math.MaxUint64))
	if f, l := indexes(t, s); f != 3 || l != 4 {
		t.Fatalf("after DeleteRange(5,max): first %d last %d", f, l)
	}
	must(t, s.DeleteRange(4, 3)) // empty range: nothing happens
	must(t, s.Close())

	s = open(t, fs)
	defer s.Close()
	if f, l := indexes(t, s); f != 3 || l != 4 {
		t.Fatalf("after reopen: first %d last %d", f, l)
	}
	must(t, s.GetLog(4, &got))
	if got.Index != 4 {
		t.Fatalf("after reopen GetLog(4) = %+v", got)
	}
	// Zero values round-trip: no data, no extensions, no time.
	must(t, s.StoreLog(&raft.Log{Index: 6, Term: 5, Type: raft.LogNoop}))
	must(t, s.GetLog(6, &got))
	if got.Data != nil || got.Extensions != nil || !got.AppendedAt.IsZero() || got.Type != raft.LogNoop {
		t.Fatalf("zero fields: %+v", got)
	}
}

// TestStableStore: Set/Get and SetUint64/GetUint64 round-trip and survive a reopen; a key never
// set reads as an error whose text is "not found", which is how raft recognises a fresh node.
func TestStableStore(t *testing.T) {
	fs := vfs.NewMem()
	s := open(t, fs)
	if _, err := s.Get([]byte("LastVoteCand")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get of a missing key: %v", err)
	}
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64 of a missing key: %v", err)
	}
	must(t, s.Set([]byte("LastVoteCand"), []byte("n2")))
	must(t, s.SetUint64([]byte("CurrentTerm"), 42))
	// The two kinds of value live apart: the same key may hold both.
	must(t, s.SetUint64([]byte("LastVoteCand"), 7))
	must(t, s.Close())

	s = open(t, fs)
	defer s.Close()
	v, err := s.Get([]byte("LastVoteCand"))
	must(t, err)
	if string(v) != "n2" {
		t.Fatalf("Get = %q", v)
	}
	v[0] = 'X' // the caller's copy
	if v2, _ := s.Get([]byte("LastVoteCand")); string(v2) != "n2" {
		t.Fatalf("Get returned the store's memory: %q", v2)
	}
	if n, err := s.GetUint64([]byte("CurrentTerm")); err != nil || n != 42 {
		t.Fatalf("GetUint64 = %d, %v", n, err)
	}
	if n, err := s.GetUint64([]byte("LastVoteCand")); err != nil || n != 7 {
		t.Fatalf("GetUint64(LastVoteCand) = %d, %v", n, err)
	}
	ok, err := raft.HasExistingState(s, s, raft.NewInmemSnapshotStore())
	if err != nil || !ok {
		t.Fatalf("HasExistingState = %v, %v: a term was stored", ok, err)
	}
}

// TestFreshStoreHasNoState: raft decides whether to bootstrap through HasExistingState, which
// reads the term expecting "not found".
func TestFreshStoreHasNoState(t *testing.T) {
	s := open(t, vfs.NewMem())
	defer s.Close()
	ok, err := raft.HasExistingState(s, s, raft.NewInmemSnapshotStore())
	if err != nil || ok {
		t.Fatalf("HasExistingState on a fresh store = %v, %v", ok, err)
	}
}

func TestDecodeLogRefusesDamage(t *testing.T) {
	good := AppendLog(nil, entry(9))
	if _, err := DecodeLog(good); err != nil {
		t.Fatal(err)
	}
	for i := range good {
		if _, err := DecodeLog(good[:i]); err == nil {
			t.Fatalf("a cut at %d bytes decoded", i)
		}
	}
	if _, err := DecodeLog(append(good, 0)); err == nil {
		t.Fatal("trailing bytes decoded")
	}
	bad := append([]byte{}, good...)
	bad[0] = 2
	if _, err := DecodeLog(bad); err == nil {
		t.Fatal("unknown version decoded")
	}
	if _, err := DecodeUint64([]byte{1, 2}); err == nil {
		t.Fatal("short uint64 decoded")
	}
}

// TestWithRaft runs a single raft node on the store: it bootstraps, commits a command, restarts
// on the same database and finds its log and term again.
func TestWithRaft(t *testing.T) {
	fs := vfs.NewMem()
	s := open(t, fs)
	cfg := raft.DefaultConfig()
	cfg.LocalID = "n1"
	cfg.LogOutput = nil
	cfg.Logger = nil
	cfg.LogLevel = "error"
	_, trans := raft.NewInmemTransport("n1")
	snaps := raft.NewInmemSnapshotStore()
	fsm := &countFSM{}
	r, err := raft.NewRaft(cfg, fsm, s, s, snaps, trans)
	must(t, err)
	must(t, r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: trans.LocalAddr()}}}).Error())
	deadline := time.After(10 * time.Second)
	for r.State() != raft.Leader {
		select {
		case <-r.LeaderCh():
		case <-deadline:
			t.Fatal("no leadership within 10 s")
		}
	}
	must(t, r.Apply([]byte("one"), 5*time.Second).Error())
	must(t, r.Shutdown().Error())
	last, _ := s.LastIndex()
	if last < 2 {
		t.Fatalf("last index %d after a bootstrap and a command", last)
	}
	must(t, s.Close())

	s = open(t, fs)
	defer s.Close()
	ok, err := raft.HasExistingState(s, s, snaps)
	if err != nil || !ok {
		t.Fatalf("restarted store has no state: %v %v", ok, err)
	}
}

type countFSM struct{ n int }

func (f *countFSM) Apply(*raft.Log) any                 { f.n++; return nil }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (f *countFSM) Restore(r io.ReadCloser) error       { return r.Close() }
