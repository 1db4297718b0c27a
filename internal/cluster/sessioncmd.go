package cluster

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// The session commands of the replicated state machine (see sessions.go for what they do):
//
//	cmdClaim   str client, str node, uvarint incarnation, str identity, byte flags
//	cmdOps     str node, ops to the end                the changes one node made to its sessions
//	cmdAdopt   str from, strs to                       a node's sessions go to the nodes in to
//	cmdNodeUp  str node, uvarint incarnation           a node (re)started and took up its sessions
//
// An op is a byte kind, str client, uvarint epoch (the log index from which the node holds the
// session; opForget: of its latest claim) and the kind's fields:
//
//	opRecord   bytes record                            with its whole set of subscriptions (older nodes')
//	opDelete                                           the session's state (not its entry)
//	opForget                                           the entry, when no later claim was made
//	opQPut     uvarint seq, bytes item
//	opQDel     uvarint seq
//	opQClear   uvarint from                            every queued item from there on
//	opFPut     uvarint packet id, uvarint order, byte released, bytes item
//	opFDel     uvarint packet id
//	opNAdd     uvarint packet id
//	opNDel     uvarint packet id
//	opRecordApart bytes record                         without subscriptions: those stored stay
//	opSubPut   uvarint n, n × (str filter, options)   subscriptions added or replaced by filter
//	opSubDel   strs filters                            subscriptions removed
//
// A subscription's options are byte QoS, byte flags (1 no local, 2 retain as published), byte
// retain handling, uvarint subscription id: the value of its key in the replica.
const (
	cmdClaim  = 6
	cmdOps    = 7
	cmdAdopt  = 8
	cmdNodeUp = 9
)

const (
	opRecord = 1 + iota
	opDelete
	opForget
	opQPut
	opQDel
	opQClear
	opFPut
	opFDel
	opNAdd
	opNDel
	opRecordApart
	opSubPut
	opSubDel
)

// Claim flags.
const (
	claimClean     = 1
	claimExclusive = 2
)

// sessOp is one decoded op. Raw aliases the command.
type sessOp struct {
	Kind     byte
	Client   string
	Epoch    uint64
	N        uint64 // seq, packet id, or the start of a clear
	Ord      uint64
	Released bool
	Raw      []byte // the record or item as it is stored
	Rec      *store.SessionRecord
	Subs     []store.Subscription // opSubPut
	Filters  []string             // opSubDel
}

func encodeClaim(client, node string, inc uint64, identity string, flags byte) []byte {
	b := appendStr([]byte{cmdClaim}, client)
	b = appendStr(b, node)
	b = binary.AppendUvarint(b, inc)
	b = appendStr(b, identity)
	return append(b, flags)
}

func encodeAdopt(from string, to []string) []byte {
	return appendStrs(appendStr([]byte{cmdAdopt}, from), to)
}

func encodeNodeUp(node string, inc uint64) []byte {
	return binary.AppendUvarint(appendStr([]byte{cmdNodeUp}, node), inc)
}

// appendOpHead begins an op.
func appendOpHead(b []byte, kind byte, client string, epoch uint64) []byte {
	b = append(b, kind)
	b = appendStr(b, client)
	return binary.AppendUvarint(b, epoch)
}

// decodeOps reads the ops of a cmdOps command after its node.
func (d *decoder) ops() []sessOp {
	var out []sessOp
	for len(d.b) > 0 && !d.bad {
		o := sessOp{Kind: d.byte(), Client: d.str(), Epoch: d.uvarint()}
		switch o.Kind {
		case opRecord:
			o.Raw = d.raw()
			if rec, err := decodeRecord(o.Raw); err != nil {
				d.fail()
			} else {
				o.Rec = &rec
			}
		case opRecordApart:
			o.Raw = d.raw()
			if rec, err := decodeRecord(o.Raw); err != nil || len(rec.Subscriptions) > 0 {
				d.fail()
			} else {
				o.Rec = &rec
			}
		case opSubPut:
			n := d.count(5)
			o.Subs = make([]store.Subscription, 0, n)
			for range n {
				sub := store.Subscription{Filter: d.str()}
				d.subOptions(&sub)
				if sub.Filter == "" {
					d.fail()
				}
				o.Subs = append(o.Subs, sub)
			}
		case opSubDel:
			o.Filters = d.strs()
			if slices.Contains(o.Filters, "") {
				d.fail()
			}
		case opDelete, opForget:
		case opQPut:
			o.N = d.uvarint()
			o.Raw = d.raw()
			if _, err := decodeItem(o.Raw); err != nil {
				d.fail()
			}
		case opQDel, opQClear, opFDel, opNAdd, opNDel:
			o.N = d.uvarint()
		case opFPut:
			o.N, o.Ord = d.uvarint(), d.uvarint()
			switch d.byte() {
			case 0:
			case 1:
				o.Released = true
			default:
				d.fail()
			}
			o.Raw = d.raw()
			if _, err := decodeItem(o.Raw); err != nil {
				d.fail()
			}
		default:
			d.fail()
		}
		if (o.Kind >= opFPut && o.Kind <= opNDel) && o.N > 0xFFFF {
			d.fail()
		}
		out = append(out, o)
	}
	return out
}

// appendItem encodes a queued or in-flight delivery as the replica keeps it: the whole message
// (bodies are not shared between sessions there).
func appendItem(b []byte, it store.Item) []byte {
	b = binary.AppendUvarint(b, it.Msg.ID)
	b = appendMessage(b, it.Msg)
	var flags byte
	if it.Retain {
		flags |= 1
	}
	b = append(b, it.QoS, flags)
	b = binary.AppendUvarint(b, uint64(len(it.SubIDs)))
	for _, id := range it.SubIDs {
		b = binary.AppendUvarint(b, uint64(id))
	}
	return binary.AppendUvarint(b, it.Seq)
}

// decodeItem reads an item; its message is a copy.
func decodeItem(b []byte) (store.Item, error) {
	d := decoder{b: b}
	m := &message.Message{ID: d.uvarint()}
	d.message(m)
	it := store.Item{QoS: d.byte()}
	flags := d.byte()
	if it.QoS > 2 || flags&^1 != 0 {
		d.fail()
	}
	it.Retain = flags&1 != 0
	n := d.count(1)
	if n > 0 {
		it.SubIDs = make([]uint32, n)
		for i := range it.SubIDs {
			v := d.uvarint()
			if v > 0xFFFFFFFF {
				d.fail()
			}
			it.SubIDs[i] = uint32(v)
		}
	}
	it.Seq = d.uvarint()
	if d.bad || len(d.b) != 0 {
		return store.Item{}, fmt.Errorf("%w: session item", errFrame)
	}
	it.Msg = m.Clone()
	return it, nil
}

// appendRecord encodes a session record (its client id is the key).
func appendRecord(b []byte, r store.SessionRecord) []byte {
	b = appendStr(b, r.Identity)
	b = binary.AppendUvarint(b, uint64(r.Expiry))
	b = binary.AppendVarint(b, r.Disconnected)
	b = binary.AppendUvarint(b, r.Dropped)
	b = appendSubs(b, r.Subscriptions)
	if r.Will == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(r.Will.Delay))
	b = binary.AppendUvarint(b, r.Will.Msg.ID)
	return appendMessage(b, r.Will.Msg)
}

// decodeRecord reads a session record without its client id; strings and the will are copies.
func decodeRecord(b []byte) (store.SessionRecord, error) {
	d := decoder{b: b}
	var r store.SessionRecord
	r.Identity = d.str()
	exp := d.uvarint()
	if exp > 0xFFFFFFFF {
		d.fail()
	}
	r.Expiry = uint32(exp)
	r.Disconnected = d.varint()
	r.Dropped = d.uvarint()
	n := d.count(5)
	for range n {
		s := store.Subscription{Filter: d.str()}
		if d.subOptions(&s); d.bad {
			break
		}
		r.Subscriptions = append(r.Subscriptions, s)
	}
	switch d.byte() {
	case 0:
	case 1:
		delay := d.uvarint()
		m := &message.Message{ID: d.uvarint()}
		d.message(m)
		if delay > 0xFFFFFFFF {
			d.fail()
		}
		r.Will = &store.Will{Delay: uint32(delay), Msg: m}
	default:
		d.fail()
	}
	if d.bad || len(d.b) != 0 {
		return store.SessionRecord{}, fmt.Errorf("%w: session record", errFrame)
	}
	if r.Will != nil {
		r.Will.Msg = r.Will.Msg.Clone()
	}
	return r, nil
}

// appendSubs encodes subscriptions: a count, then each one's filter and options.
func appendSubs(b []byte, subs []store.Subscription) []byte {
	b = binary.AppendUvarint(b, uint64(len(subs)))
	for _, s := range subs {
		b = appendSubOptions(appendStr(b, s.Filter), s)
	}
	return b
}

// appendSubOptions encodes a subscription's options (not its filter).
func appendSubOptions(b []byte, s store.Subscription) []byte {
	var flags byte
	if s.NoLocal {
		flags |= 1
	}
	if s.RetainAsPublished {
		flags |= 2
	}
	b = append(b, s.QoS, flags, s.RetainHandling)
	return binary.AppendUvarint(b, uint64(s.ID))
}

// subOptions reads what appendSubOptions wrote into s.
func (d *decoder) subOptions(s *store.Subscription) {
	s.QoS = d.byte()
	flags := d.byte()
	s.RetainHandling = d.byte()
	id := d.uvarint()
	if s.QoS > 2 || flags&^3 != 0 || s.RetainHandling > 2 || id > 0xFFFFFFFF {
		d.fail()
		return
	}
	s.NoLocal, s.RetainAsPublished, s.ID = flags&1 != 0, flags&2 != 0, uint32(id)
}

// decodeSubOptions reads a subscription key's value in the replica.
func decodeSubOptions(filter string, v []byte) (store.Subscription, error) {
	d := decoder{b: v}
	s := store.Subscription{Filter: filter}
	d.subOptions(&s)
	if d.bad || len(d.b) != 0 {
		return store.Subscription{}, fmt.Errorf("%w: subscription", errFrame)
	}
	return s, nil
}
