package pebblestore

import (
	"encoding/binary"
	"errors"
	"math"
	"unsafe"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// The value encodings are tern's own and compact: uvarints for lengths and counts, zig-zag varints
// for times, one flags byte per record. They carry no version of their own: the directory's format
// key versions them all, so a change here means a new formatVersion.
//
// Decoders treat their input as untrusted (a damaged disk, a bug in an older build): they check
// every length against what is left, refuse unknown flag bits, out-of-range values and trailing
// bytes, and return errCorrupt rather than panic. What they return never aliases the input, which
// for values read from Pebble is a buffer it reuses.

var errCorrupt = errors.New("corrupt record")

// Message flags.
const (
	msgRetain      = 1 << iota
	msgCorrelation // CorrelationData is present (possibly empty): nil and empty differ
	msgFlagsKnown  = msgRetain | msgCorrelation
)

// Entry flags.
const (
	entryShared     = 1 << iota // the message body is under 'm' msgID, not inline
	entryRetain                 // Item.Retain
	entryReleased               // InflightEntry.Released
	entryInflight               // an in-flight entry: a packet id follows the message id
	entrySeq                    // Item.Seq follows (packet id and) message id; since format 2
	entryFlagsKnown = entryShared | entryRetain | entryReleased | entryInflight | entrySeq
)

// Subscription flags.
const (
	subNoLocal = 1 << iota
	subRetainAsPublished
	subFlagsKnown = subNoLocal | subRetainAsPublished
)

// maxSize bounds an entry header's size field, far above any real message, so that a corrupt
// header cannot make Bytes overflow.
const maxSize = 1 << 40

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendMessage encodes every field of m except Frames, a per-process cache.
func appendMessage(b []byte, m *message.Message) []byte {
	b = binary.AppendUvarint(b, m.ID)
	b = appendString(b, m.Topic)
	b = appendBytes(b, m.Payload)
	var flags byte
	if m.Retain {
		flags |= msgRetain
	}
	if m.Props.CorrelationData != nil {
		flags |= msgCorrelation
	}
	b = append(b, m.QoS, flags)
	b = binary.AppendVarint(b, m.Time)
	b = binary.AppendVarint(b, m.Expires)
	b = appendString(b, m.Sender)
	b = append(b, m.Props.PayloadFormat)
	b = appendString(b, m.Props.ContentType)
	b = appendString(b, m.Props.ResponseTopic)
	if m.Props.CorrelationData != nil {
		b = appendBytes(b, m.Props.CorrelationData)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Props.User)))
	for _, u := range m.Props.User {
		b = appendString(b, u.Key)
		b = appendString(b, u.Value)
	}
	return b
}

// decoder reads an encoding front to back. The first failure empties it and sticks, so a caller
// checks err once at the end and every read in between is safe.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	d.err = errCorrupt
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail()
		return 0
	}
	return uint32(v)
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns the next length-prefixed field; it aliases the input.
func (d *decoder) bytes() []byte {
	l := d.uvarint()
	if l > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:l:l]
	d.b = d.b[l:]
	return p
}

// str returns the next length-prefixed field as a string sharing the input's memory: callers
// decode from a private copy that is never written again.
func (d *decoder) str() string {
	p := d.bytes()
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

// count reads a number of elements each at least min bytes long, refusing counts the remaining
// input cannot hold so that a corrupt count cannot make us allocate gigabytes.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) qos() byte {
	q := d.byte()
	if q > 2 {
		d.fail()
	}
	return q
}

func (d *decoder) flags(known byte) byte {
	f := d.byte()
	if f&^known != 0 {
		d.fail()
	}
	return f
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return d.err
}

// decodeMessage decodes a whole appendMessage encoding into a fresh Message whose strings and
// slices share one private copy of data.
func decodeMessage(data []byte) (*message.Message, error) {
	d := decoder{b: append([]byte(nil), data...)}
	m := d.message()
	if err := d.end(); err != nil {
		return nil, err
	}
	return m, nil
}

// message decodes a message from d, which must own its buffer (see str).
func (d *decoder) message() *message.Message {
	m := &message.Message{ID: d.uvarint(), Topic: d.str()}
	if p := d.bytes(); len(p) > 0 {
		m.Payload = p
	}
	m.QoS = d.qos()
	flags := d.flags(msgFlagsKnown)
	m.Retain = flags&msgRetain != 0
	m.Time = d.varint()
	m.Expires = d.varint()
	m.Sender = d.str()
	m.Props.PayloadFormat = d.byte()
	m.Props.ContentType = d.str()
	m.Props.ResponseTopic = d.str()
	if flags&msgCorrelation != 0 {
		m.Props.CorrelationData = d.bytes()
		if m.Props.CorrelationData == nil && d.err == nil {
			m.Props.CorrelationData = []byte{}
		}
	}
	if n := d.count(2); n > 0 {
		m.Props.User = make([]message.UserProperty, n)
		for i := range m.Props.User {
			m.Props.User[i] = message.UserProperty{Key: d.str(), Value: d.str()}
		}
	}
	if d.err != nil {
		return nil
	}
	return m
}

// entryHeader is the front of a queue or in-flight entry: all that Open reads of it.
type entryHeader struct {
	flags byte
	qos   byte
	// size is Item.Size() when the entry was written, so Open can sum a queue's Bytes without
	// decoding bodies.
	size  int64
	msgID uint64
	pid   uint16
	seq   uint64
}

func (h entryHeader) shared() bool { return h.flags&entryShared != 0 }

// appendEntry encodes an item (and, for in-flight entries, its packet state). A shared item is
// encoded without its message, which lives under bodyKey(msgID).
func appendEntry(b []byte, it store.Item, shared, inflight bool, pid uint16, released bool) []byte {
	var flags byte
	if shared {
		flags |= entryShared
	}
	if it.Retain {
		flags |= entryRetain
	}
	if released {
		flags |= entryReleased
	}
	if inflight {
		flags |= entryInflight
	}
	if it.Seq != 0 {
		flags |= entrySeq
	}
	b = append(b, flags, it.QoS)
	b = binary.AppendUvarint(b, uint64(it.Size()))
	b = binary.AppendUvarint(b, it.Msg.ID)
	if inflight {
		b = binary.BigEndian.AppendUint16(b, pid)
	}
	if it.Seq != 0 {
		b = binary.AppendUvarint(b, it.Seq)
	}
	b = binary.AppendUvarint(b, uint64(len(it.SubIDs)))
	for _, id := range it.SubIDs {
		b = binary.AppendUvarint(b, uint64(id))
	}
	if !shared {
		b = appendMessage(b, it.Msg)
	}
	return b
}

func (d *decoder) entryHeader() entryHeader {
	h := entryHeader{flags: d.flags(entryFlagsKnown), qos: d.qos()}
	size := d.uvarint()
	if size > maxSize {
		d.fail()
	}
	h.size = int64(size)
	h.msgID = d.uvarint()
	if h.flags&entryInflight != 0 {
		if len(d.b) < 2 {
			d.fail()
			return h
		}
		h.pid = binary.BigEndian.Uint16(d.b)
		d.b = d.b[2:]
	} else if h.flags&entryReleased != 0 {
		d.fail() // only an in-flight delivery can be released
	}
	if h.flags&entrySeq != 0 {
		if h.seq = d.uvarint(); h.seq == 0 {
			d.fail() // 0 is written as no number at all
		}
	}
	return h
}

// decodeEntryHeader reads only the header, for scans that need sizes, ids and references.
func decodeEntryHeader(v []byte) (entryHeader, error) {
	d := decoder{b: v}
	h := d.entryHeader()
	return h, d.err
}

// decodeEntry decodes a whole entry. For a shared entry msg is nil and the caller fetches the body
// by h.msgID; for an inline one msg is fresh and its id agrees with the header's.
func decodeEntry(v []byte) (h entryHeader, subIDs []uint32, msg *message.Message, err error) {
	d := decoder{b: v}
	h = d.entryHeader()
	if n := d.count(1); n > 0 {
		subIDs = make([]uint32, n)
		for i := range subIDs {
			subIDs[i] = d.uint32()
		}
	}
	if d.err != nil {
		return h, nil, nil, d.err
	}
	if h.shared() {
		return h, subIDs, nil, d.end()
	}
	msg, err = decodeMessage(d.b)
	if err == nil && msg.ID != h.msgID {
		err = errCorrupt
	}
	return h, subIDs, msg, err
}

// appendMarks encodes a session's marks.
func appendMarks(b []byte, m store.Marks) []byte {
	b = binary.AppendUvarint(b, m.Sent)
	return binary.AppendUvarint(b, m.Taken)
}

func decodeMarks(v []byte) (store.Marks, error) {
	d := decoder{b: v}
	m := store.Marks{Sent: d.uvarint(), Taken: d.uvarint()}
	return m, d.end()
}

// appendSession encodes a session record. Since format 3 the store writes records with no
// subscriptions (they have keys of their own, appendSubOptions), but the encoding keeps their
// place: records of formats 1 and 2 carry them, and the migration reads them from there.
func appendSession(b []byte, rec store.SessionRecord) []byte {
	b = appendString(b, rec.ClientID)
	b = appendString(b, rec.Identity)
	b = binary.AppendUvarint(b, uint64(rec.Expiry))
	b = binary.AppendVarint(b, rec.Disconnected)
	b = binary.AppendUvarint(b, rec.Dropped)
	b = binary.AppendUvarint(b, uint64(len(rec.Subscriptions)))
	for _, s := range rec.Subscriptions {
		b = appendString(b, s.Filter)
		b = appendSubOptions(b, s)
	}
	b = appendBool(b, rec.Will != nil)
	if rec.Will != nil {
		b = binary.AppendUvarint(b, uint64(rec.Will.Delay))
		b = appendMessage(b, rec.Will.Msg)
	}
	return b
}

func decodeSession(v []byte) (store.SessionRecord, error) {
	d := decoder{b: append([]byte(nil), v...)}
	rec := store.SessionRecord{ClientID: d.str(), Identity: d.str(), Expiry: d.uint32()}
	rec.Disconnected = d.varint()
	rec.Dropped = d.uvarint()
	if n := d.count(5); n > 0 {
		rec.Subscriptions = make([]store.Subscription, n)
		for i := range rec.Subscriptions {
			s := &rec.Subscriptions[i]
			s.Filter = d.str()
			d.subOptions(s)
		}
	}
	switch d.byte() {
	case 0:
	case 1:
		w := &store.Will{Delay: d.uint32()}
		if d.err == nil {
			w.Msg = d.message()
			rec.Will = w
		}
	default:
		d.fail()
	}
	if err := d.end(); err != nil {
		return store.SessionRecord{}, err
	}
	return rec, nil
}

// appendSubOptions encodes a subscription's options, everything but its filter: the value of a
// subscription key (the filter is in the key), and a part of a format 1 or 2 record.
func appendSubOptions(b []byte, s store.Subscription) []byte {
	var flags byte
	if s.NoLocal {
		flags |= subNoLocal
	}
	if s.RetainAsPublished {
		flags |= subRetainAsPublished
	}
	b = append(b, s.QoS, flags, s.RetainHandling)
	return binary.AppendUvarint(b, uint64(s.ID))
}

func (d *decoder) subOptions(s *store.Subscription) {
	s.QoS = d.qos()
	flags := d.flags(subFlagsKnown)
	s.NoLocal = flags&subNoLocal != 0
	s.RetainAsPublished = flags&subRetainAsPublished != 0
	s.RetainHandling = d.byte()
	if s.RetainHandling > 2 {
		d.fail()
	}
	s.ID = d.uint32()
}

// decodeSubscription decodes a subscription key's value into a subscription to filter.
func decodeSubscription(filter string, v []byte) (store.Subscription, error) {
	d := decoder{b: v}
	s := store.Subscription{Filter: filter}
	d.subOptions(&s)
	if err := d.end(); err != nil {
		return store.Subscription{}, err
	}
	return s, nil
}

// messageID reads just the id at the front of a message encoding.
func messageID(v []byte) (uint64, error) {
	id, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, errCorrupt
	}
	return id, nil
}
