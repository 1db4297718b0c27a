package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ternmq/tern/internal/message"
)

// Node links speak a small framing of tern's own rather than MQTT: besides messages they carry
// interest, acknowledgements, requests to the leader (joins, writes, leaves) and liveness with
// raft progress, none of which is an MQTT packet, and every field of a message (origin, id,
// sender, expiry, properties) travels as the core holds it, with no mapping in between.
//
// A frame is a 4-byte big-endian length (of what follows), a type byte and its fields. Integers
// are uvarints (times varints), strings and byte strings are a uvarint length and the bytes.

// Frame types.
const (
	fHello    = 'H' // uvarint version, str node id
	fMsg      = 'M' // uvarint seq (0: no acknowledgement), byte flags, uvarint origin id, strs groups, uvarint applied index, message
	fAck      = 'A' // uvarint seq, str error ("" accepted)
	fInterest = 'I' // strs filters (the whole set, with the parts sent since the last fInterest)
	fPart     = 'i' // strs filters (a part of the whole set; the next fInterest completes it)
	fPing     = 'P' // progress
	fPong     = 'p' // progress
	fJoin     = 'J' // uvarint request, str node id, str address
	fWrite    = 'W' // uvarint request, bytes command
	fLeave    = 'L' // uvarint request, str node id
	fRead     = 'Q' // uvarint request: the leader's read index, answered in an fReply (readindex.go)
	fReply    = 'R' // uvarint request, uvarint index, str leader address, str error[, boot answer]
)

const wireVersion = 2

// A reply's boot answer (a stateless node's answer to a join) follows its error: a flags byte
// with replyBoot set, str node id, str vote. Every other reply ends at its error, as it did
// before the field existed, so nodes that do not know it still read those replies (a rolling
// upgrade keeps its links); only a bootstrap needs every node to know it.
const (
	replyBoot      = 1 // the answering node belongs to no cluster yet
	replyWithdrawn = 2 // it will never bootstrap (bootstrap.go)
)

// msgAnswerable is fMsg's flag for a call its services may answer without grants of their own.
const msgAnswerable = 1

// errFrame is every decoding failure of a frame, command or snapshot.
var errFrame = errors.New("malformed cluster frame")

// progress is what a node tells its peers of its raft log with every ping and pong.
type progress struct {
	Applied, Last, Commit uint64
}

// frame is one decoded frame; which fields are set depends on Type.
type frame struct {
	Type       byte
	Seq        uint64 // fMsg, fAck, and the request id of fJoin, fWrite, fLeave, fRead, fReply
	Node       string // fHello, fJoin, fLeave
	Addr       string // fJoin, fReply (the leader's)
	Err        string // fAck, fReply
	Index      uint64 // fReply; fMsg: the index the sender had applied
	Origin     uint64 // fMsg
	Answerable bool   // fMsg
	Groups     []string
	Filters    []string
	Msg        *message.Message
	Data       []byte // fWrite
	Progress   progress
	Boot       *bootInfo // fReply: the boot answer of a node without a cluster yet
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendStrs(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendStr(b, s)
	}
	return b
}

// beginFrame appends a frame header whose length endFrame fills in.
func beginFrame(b []byte, typ byte) ([]byte, int) {
	start := len(b)
	return append(b, 0, 0, 0, 0, typ), start
}

func endFrame(b []byte, start int) []byte {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

func appendHello(b []byte, node string) []byte {
	b, s := beginFrame(b, fHello)
	b = binary.AppendUvarint(b, wireVersion)
	return endFrame(appendStr(b, node), s)
}

func appendMsg(b []byte, seq uint64, answerable bool, groups []string, applied uint64, m *message.Message) []byte {
	b, s := beginFrame(b, fMsg)
	b = binary.AppendUvarint(b, seq)
	var flags byte
	if answerable {
		flags |= msgAnswerable
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, m.ID)
	b = appendStrs(b, groups)
	b = binary.AppendUvarint(b, applied)
	return endFrame(appendMessage(b, m), s)
}

func appendAck(b []byte, seq uint64, err string) []byte {
	b, s := beginFrame(b, fAck)
	b = binary.AppendUvarint(b, seq)
	return endFrame(appendStr(b, err), s)
}

// appendInterest appends a node's whole interest: fPart frames of about part bytes each, then
// an fInterest frame with the rest. A fleet's interest (a filter per device) outgrows any frame
// bound; a set that fits in one part is one fInterest frame, as before parts existed, so a node
// that does not know fPart still reads it.
func appendInterest(b []byte, filters []string, part int) []byte {
	for {
		n, size := 0, 0
		for n < len(filters) && (n == 0 || size+len(filters[n])+binary.MaxVarintLen32 <= part) {
			size += len(filters[n]) + binary.MaxVarintLen32
			n++
		}
		typ := byte(fPart)
		if n == len(filters) {
			typ = fInterest
		}
		var s int
		b, s = beginFrame(b, typ)
		b = endFrame(appendStrs(b, filters[:n]), s)
		if typ == fInterest {
			return b
		}
		filters = filters[n:]
	}
}

func appendProgress(b []byte, typ byte, p progress) []byte {
	b, s := beginFrame(b, typ)
	b = binary.AppendUvarint(b, p.Applied)
	b = binary.AppendUvarint(b, p.Last)
	return endFrame(binary.AppendUvarint(b, p.Commit), s)
}

func appendJoin(b []byte, req uint64, node, addr string) []byte {
	b, s := beginFrame(b, fJoin)
	b = binary.AppendUvarint(b, req)
	b = appendStr(b, node)
	return endFrame(appendStr(b, addr), s)
}

func appendWrite(b []byte, req uint64, cmd []byte) []byte {
	b, s := beginFrame(b, fWrite)
	b = binary.AppendUvarint(b, req)
	return endFrame(appendBytes(b, cmd), s)
}

func appendRead(b []byte, req uint64) []byte {
	b, s := beginFrame(b, fRead)
	return endFrame(binary.AppendUvarint(b, req), s)
}

func appendLeave(b []byte, req uint64, node string) []byte {
	b, s := beginFrame(b, fLeave)
	b = binary.AppendUvarint(b, req)
	return endFrame(appendStr(b, node), s)
}

func appendReply(b []byte, req, index uint64, leader, err string) []byte {
	return appendReplyBoot(b, req, index, leader, err, nil)
}

// appendReplyBoot is appendReply with a boot answer (boot nil: none).
func appendReplyBoot(b []byte, req, index uint64, leader, err string, boot *bootInfo) []byte {
	b, s := beginFrame(b, fReply)
	b = binary.AppendUvarint(b, req)
	b = binary.AppendUvarint(b, index)
	b = appendStr(b, leader)
	b = appendStr(b, err)
	if boot == nil {
		return endFrame(b, s)
	}
	flags := byte(replyBoot)
	if boot.Withdrawn {
		flags |= replyWithdrawn
	}
	b = append(b, flags)
	b = appendStr(b, boot.Node)
	return endFrame(appendStr(b, boot.Vote), s)
}

// appendMessage encodes what the core needs of a message to deliver it elsewhere.
func appendMessage(b []byte, m *message.Message) []byte {
	b = appendStr(b, m.Topic)
	b = appendBytes(b, m.Payload)
	var flags byte
	if m.Retain {
		flags |= 1
	}
	if m.Props.CorrelationData != nil {
		flags |= 2
	}
	b = append(b, m.QoS, flags)
	b = binary.AppendVarint(b, m.Time)
	b = binary.AppendVarint(b, m.Expires)
	b = binary.AppendUvarint(b, uint64(m.ExpiryInterval))
	b = appendStr(b, m.Sender)
	b = append(b, m.Props.PayloadFormat)
	b = appendStr(b, m.Props.ContentType)
	b = appendStr(b, m.Props.ResponseTopic)
	b = appendBytes(b, m.Props.CorrelationData)
	b = binary.AppendUvarint(b, uint64(len(m.Props.User)))
	for _, u := range m.Props.User {
		b = appendStr(b, u.Key)
		b = appendStr(b, u.Value)
	}
	return b
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) fail() {
	d.bad = true
	d.b = nil
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

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// raw returns a length-prefixed byte string without copying it.
func (d *decoder) raw() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) str() string { return string(d.raw()) }

// count reads a count of items each at least min bytes long, refusing one the rest cannot hold.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) strs() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *decoder) message(m *message.Message) {
	m.Topic = d.str()
	m.Payload = d.raw()
	m.QoS = d.byte()
	flags := d.byte()
	if m.QoS > 2 || flags&^3 != 0 {
		d.fail()
		return
	}
	m.Retain = flags&1 != 0
	m.Time = d.varint()
	m.Expires = d.varint()
	ei := d.uvarint()
	if ei > 0xFFFFFFFF {
		d.fail()
		return
	}
	m.ExpiryInterval = uint32(ei)
	m.Sender = d.str()
	m.Props.PayloadFormat = d.byte()
	m.Props.ContentType = d.str()
	m.Props.ResponseTopic = d.str()
	m.Props.CorrelationData = d.raw()
	if flags&2 == 0 {
		m.Props.CorrelationData = nil
	} else if m.Props.CorrelationData == nil {
		m.Props.CorrelationData = []byte{}
	}
	n := d.count(2)
	if n > 0 {
		m.Props.User = make([]message.UserProperty, n)
		for i := range m.Props.User {
			m.Props.User[i] = message.UserProperty{Key: d.str(), Value: d.str()}
		}
	}
}

// decodeFrame reads the frame body (type byte onwards). Strings and byte strings of a message
// alias body, which the caller must keep until it is done with the frame.
func decodeFrame(body []byte) (frame, error) {
	var f frame
	if len(body) == 0 {
		return f, errFrame
	}
	f.Type = body[0]
	d := decoder{b: body[1:]}
	switch f.Type {
	case fHello:
		if v := d.uvarint(); v != wireVersion && !d.bad {
			return f, fmt.Errorf("%w: wire version %d, this node speaks %d", errFrame, v, wireVersion)
		}
		f.Node = d.str()
	case fMsg:
		f.Seq = d.uvarint()
		flags := d.byte()
		if flags&^msgAnswerable != 0 {
			d.fail()
		}
		f.Answerable = flags&msgAnswerable != 0
		f.Origin = d.uvarint()
		f.Groups = d.strs()
		f.Index = d.uvarint()
		f.Msg = &message.Message{}
		d.message(f.Msg)
		f.Msg.ID = f.Origin
	case fAck:
		f.Seq = d.uvarint()
		f.Err = d.str()
	case fInterest, fPart:
		f.Filters = d.strs()
	case fPing, fPong:
		f.Progress = progress{Applied: d.uvarint(), Last: d.uvarint(), Commit: d.uvarint()}
	case fJoin:
		f.Seq = d.uvarint()
		f.Node = d.str()
		f.Addr = d.str()
	case fWrite:
		f.Seq = d.uvarint()
		f.Data = d.raw()
	case fLeave:
		f.Seq = d.uvarint()
		f.Node = d.str()
	case fRead:
		f.Seq = d.uvarint()
	case fReply:
		f.Seq = d.uvarint()
		f.Index = d.uvarint()
		f.Addr = d.str()
		f.Err = d.str()
		if len(d.b) > 0 && !d.bad {
			flags := d.byte()
			if flags&^(replyBoot|replyWithdrawn) != 0 || flags&replyBoot == 0 {
				d.fail()
			}
			f.Boot = &bootInfo{Node: d.str(), Vote: d.str(), Withdrawn: flags&replyWithdrawn != 0}
		}
	default:
		return f, fmt.Errorf("%w: unknown type %q", errFrame, f.Type)
	}
	if d.bad || len(d.b) != 0 {
		return frame{}, fmt.Errorf("%w: type %q", errFrame, f.Type)
	}
	return f, nil
}
