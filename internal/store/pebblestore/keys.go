package pebblestore

import (
	"encoding/binary"
	"errors"
)

// Key layout. Every key starts with one byte naming its kind, so each kind is one contiguous range
// and a scan of one kind never meets another:
//
//	0x00 "tern-format"               format version of the directory (4 bytes, big-endian)
//	'a' len(ns) ns key                a record (store.Records: users, groups, tokens)
//	'f' len(id) id order(8)           a delivery in flight; order is the session's put counter
//	'i' len(id) id pid(2)             an exactly-once publish received and not yet released
//	'k' id                            a session's sequence marks (store.Marks), since format 2
//	'm' msgID(8)                      a shared message body, referenced by 'q' and 'f' entries
//	'q' len(id) id seq(8)             a queued delivery; seq grows by one per push
//	'r' topic                         the retained message of a topic
//	's' id                            a session record
//	'u' len(id) id filter             a session's subscription to filter, since format 3
//
// Numbers are big-endian so that byte order is numeric order: a queue is one range scan from its
// head, and in-flight entries come back in the order they were first put. len(id) is a uvarint: a
// length prefix keeps one client id's keys from ever matching a prefix scan of another id that
// extends it ("d" and "dd"). 's' and 'r' keys are never prefix-scanned per id, so they need none.
const (
	kindMeta     = 0x00
	kindRecord   = 'a'
	kindInflight = 'f'
	kindIncoming = 'i'
	kindMarks    = 'k'
	kindBody     = 'm'
	kindQueue    = 'q'
	kindRetained = 'r'
	kindSession  = 's'
	kindSub      = 'u'
)

// formatKey holds the directory's format version; see checkFormat.
var formatKey = []byte("\x00tern-format")

// idPrefix is kind, len(id), id: the common start of one session's keys of that kind.
func idPrefix(kind byte, id string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(id)+8)
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(id)))
	return append(b, id...)
}

// seqKey appends an 8-byte big-endian number to a copy of prefix.
func seqKey(prefix []byte, n uint64) []byte {
	k := make([]byte, len(prefix), len(prefix)+8)
	copy(k, prefix)
	return binary.BigEndian.AppendUint64(k, n)
}

func incomingKey(id string, pid uint16) []byte {
	return binary.BigEndian.AppendUint16(idPrefix(kindIncoming, id), pid)
}

func marksKey(id string) []byte {
	return append([]byte{kindMarks}, id...)
}

func subKey(id, filter string) []byte {
	return append(idPrefix(kindSub, id), filter...)
}

func bodyKey(msgID uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{kindBody}, msgID)
}

func retainedKey(topic string) []byte {
	return append([]byte{kindRetained}, topic...)
}

func sessionKey(id string) []byte {
	return append([]byte{kindSession}, id...)
}

// prefixEnd is the smallest key greater than every key starting with p, the exclusive upper bound
// of a prefix scan; nil when p is all 0xff (no bound).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

var errBadKey = errors.New("malformed key")

// splitIDKey parses kind, len(id), id, suffix and checks the suffix has n bytes. id and suffix
// alias key.
func splitIDKey(key []byte, n int) (id, suffix []byte, err error) {
	if len(key) < 1 {
		return nil, nil, errBadKey
	}
	l, w := binary.Uvarint(key[1:])
	// A length in more bytes than needed is not one we wrote; refusing it keeps one key per id.
	if w <= 0 || l > uint64(len(key)) || w != len(binary.AppendUvarint(nil, l)) {
		return nil, nil, errBadKey
	}
	rest := key[1+w:]
	if uint64(len(rest)) != l+uint64(n) {
		return nil, nil, errBadKey
	}
	return rest[:l], rest[l:], nil
}

// splitSubKey parses a subscription key into its client id and filter (never empty: no MQTT
// filter is). Both alias key.
func splitSubKey(key []byte) (id, filter []byte, err error) {
	if len(key) < 1 || key[0] != kindSub {
		return nil, nil, errBadKey
	}
	l, w := binary.Uvarint(key[1:])
	if w <= 0 || l > uint64(len(key)) || w != len(binary.AppendUvarint(nil, l)) {
		return nil, nil, errBadKey
	}
	rest := key[1+w:]
	if uint64(len(rest)) <= l {
		return nil, nil, errBadKey
	}
	return rest[:l], rest[l:], nil
}

// seqOf reads the number at the end of a 'q' or 'f' key whose prefix is already known.
func seqOf(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(key)-8:])
}
