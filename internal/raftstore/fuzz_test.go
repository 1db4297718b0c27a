package raftstore

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// FuzzDecodeLog: whatever the bytes, DecodeLog returns an entry or an error, and an entry it
// accepts encodes back to the same bytes.
func FuzzDecodeLog(f *testing.F) {
	f.Add(AppendLog(nil, &raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")}))
	f.Add(AppendLog(nil, &raft.Log{Index: 1 << 40, Term: 9, Type: raft.LogConfiguration, Extensions: []byte{1},
		AppendedAt: time.Unix(5, 6)}))
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		l, err := DecodeLog(v)
		if err != nil {
			return
		}
		if again := AppendLog(nil, &l); !bytes.Equal(again, v) {
			// Non-minimal varints decode too; what matters is that the entry is stable.
			l2, err := DecodeLog(again)
			if err != nil || l2.Index != l.Index || l2.Term != l.Term || !bytes.Equal(l2.Data, l.Data) {
				t.Fatalf("re-encoding changed the entry: %+v vs %+v (%v)", l, l2, err)
			}
		}
		_, _ = DecodeUint64(v)
	})
}
