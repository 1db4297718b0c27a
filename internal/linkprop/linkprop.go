// Package linkprop reads and writes the user properties with which routers tell each other about
// a forwarded message (see internal/uplink and the MQTT face's peer mode):
//
//	tern-origin  the id of the router that forwarded it (route.id)
//	tern-seq     its number in the link's dense sequence (absent: not numbered, a QoS 0 message)
//	tern-qos     "2" when it was published at QoS 2: links carry QoS 2 as QoS 1 and the
//	             numbers make it exactly once
//	tern-sender  the publisher's identity where it was published (message.SenderProperty)
//
// They come from another router, so decoding is strict: a malformed or repeated one is an error.
package linkprop

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// The property keys.
const (
	Origin = "tern-origin"
	Seq    = "tern-seq"
	QoS    = "tern-qos"
	Sender = message.SenderProperty
)

// Tags are what a forwarded message says of itself.
type Tags struct {
	Origin string
	Seq    uint64
	// QoS2: published at QoS 2, forwarded at QoS 1.
	QoS2   bool
	Sender string
}

// IsLinkKey reports whether key is one of the link's properties. Encoders leave such properties
// of a message out, so a publisher cannot forge them.
func IsLinkKey(key string) bool {
	return key == Origin || key == Seq || key == QoS || key == Sender
}

// NotLinkKey is IsLinkKey's negation: what an encoder for a link keeps of a message's own user
// properties (pubprops.Put's keep).
func NotLinkKey(key string) bool { return !IsLinkKey(key) }

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("malformed link property")

// maxSender bounds a sender identity (an MQTT string is at most 65,535 bytes anyway).
const maxSender = 4096

// Split reads the link's properties out of users and returns them with the other properties, in
// their order (rest shares users' array).
func Split(users []message.UserProperty) (t Tags, rest []message.UserProperty, err error) {
	var seen [4]bool
	once := func(i int, key string) error {
		if seen[i] {
			return fmt.Errorf("%w: %s repeated", ErrMalformed, key)
		}
		seen[i] = true
		return nil
	}
	rest = users[:0:len(users)]
	for _, u := range users {
		switch u.Key {
		case Origin:
			if err := once(0, u.Key); err != nil {
				return Tags{}, nil, err
			}
			if !validOrigin(u.Value) {
				return Tags{}, nil, fmt.Errorf("%w: %s %q is not a router id", ErrMalformed, u.Key, u.Value)
			}
			t.Origin = u.Value
		case Seq:
			if err := once(1, u.Key); err != nil {
				return Tags{}, nil, err
			}
			n, perr := strconv.ParseUint(u.Value, 10, 64)
			if perr != nil || n == 0 || u.Value[0] == '0' {
				return Tags{}, nil, fmt.Errorf("%w: %s %q is not a number from 1", ErrMalformed, u.Key, u.Value)
			}
			t.Seq = n
		case QoS:
			if err := once(2, u.Key); err != nil {
				return Tags{}, nil, err
			}
			if u.Value != "2" {
				return Tags{}, nil, fmt.Errorf("%w: %s %q (only \"2\" is sent)", ErrMalformed, u.Key, u.Value)
			}
			t.QoS2 = true
		case Sender:
			if err := once(3, u.Key); err != nil {
				return Tags{}, nil, err
			}
			if len(u.Value) > maxSender {
				return Tags{}, nil, fmt.Errorf("%w: %s longer than %d bytes", ErrMalformed, u.Key, maxSender)
			}
			t.Sender = u.Value
		default:
			rest = append(rest, u)
		}
	}
	return t, rest, nil
}

func validOrigin(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

var (
	keyOrigin, keySeq, keyQoS, valueTwo = []byte(Origin), []byte(Seq), []byte(QoS), []byte("2")
)

// Append adds t's properties to an outgoing PUBLISH's user properties. The number's digits are
// appended to scratch, which is returned for reuse (the properties point into it until encoded).
// The sender is not added: the MQTT face writes the sender of every message (setMessageProps), and
// the uplink adds it itself.
func (t Tags) Append(users []packet.UserProperty, scratch []byte) ([]packet.UserProperty, []byte) {
	if t.Origin != "" {
		users = append(users, packet.UserProperty{Key: keyOrigin, Value: []byte(t.Origin)})
	}
	if t.Seq != 0 {
		start := len(scratch)
		scratch = strconv.AppendUint(scratch, t.Seq, 10)
		users = append(users, packet.UserProperty{Key: keySeq, Value: scratch[start:len(scratch):len(scratch)]})
	}
	if t.QoS2 {
		users = append(users, packet.UserProperty{Key: keyQoS, Value: valueTwo})
	}
	return users, scratch
}
