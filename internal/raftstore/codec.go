package raftstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// A log entry is stored as
//
//	version byte (1), uvarint index, uvarint term, type byte,
//	uvarint len + data, uvarint len + extensions, varint appended-at (Unix ns, 0: none)
//
// Decoding copies data and extensions, so an entry outlives the database's buffers.

const codecVersion = 1

// errCorrupt is every decoding failure.
var errCorrupt = errors.New("corrupt log entry")

// AppendLog appends l's encoding to b.
func AppendLog(b []byte, l *raft.Log) []byte {
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	b = append(b, l.Extensions...)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	return binary.AppendVarint(b, at)
}

// DecodeLog reads an entry AppendLog wrote; anything else is an error, never a panic.
func DecodeLog(v []byte) (raft.Log, error) {
	var l raft.Log
	if len(v) < 1 || v[0] != codecVersion {
		return l, errCorrupt
	}
	d := decoder{b: v[1:]}
	l.Index = d.uvarint()
	l.Term = d.uvarint()
	l.Type = raft.LogType(d.byte())
	l.Data = d.bytes()
	l.Extensions = d.bytes()
	if at := d.varint(); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	if d.bad || len(d.b) != 0 {
		return raft.Log{}, errCorrupt
	}
	return l, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// bytes reads a length-prefixed slice; an empty one decodes as nil, as raft hands it in.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		d.b = nil
		return nil
	}
	if n == 0 {
		return nil
	}
	out := append([]byte{}, d.b[:n]...)
	d.b = d.b[n:]
	return out
}
