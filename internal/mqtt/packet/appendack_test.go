package packet

import (
	"bytes"
	"testing"
)

// AppendAck must write exactly what the packet structs write.
func TestAppendAckMatchesStructs(t *testing.T) {
	withReason := Properties{}
	withReason.ReasonString = []byte("why")
	withReason.Set(PropReasonString)
	for _, v := range []Version{V311, V5} {
		for _, tc := range []struct {
			reason ReasonCode
			props  *Properties
		}{{Success, nil}, {NoMatchingSubscribers, nil}, {UnspecifiedError, &withReason}} {
			for typ, pkt := range map[byte]Packet{
				PUBACK:  &Puback{PacketID: 7, Reason: tc.reason},
				PUBREC:  &Pubrec{PacketID: 7, Reason: tc.reason},
				PUBREL:  &Pubrel{PacketID: 7},
				PUBCOMP: &Pubcomp{PacketID: 7},
			} {
				reason := tc.reason
				props := tc.props
				if typ == PUBREL || typ == PUBCOMP {
					reason, props = Success, nil
				}
				if v == V311 {
					reason = Success
				}
				if props != nil {
					switch p := pkt.(type) {
					case *Puback:
						p.Props = *props
					case *Pubrec:
						p.Props = *props
					}
				}
				if v == V311 {
					switch p := pkt.(type) {
					case *Puback:
						p.Reason, p.Props = Success, Properties{}
					case *Pubrec:
						p.Reason, p.Props = Success, Properties{}
					}
					props = nil
				}
				want, err := pkt.Append(nil, v)
				if err != nil {
					t.Fatal(err)
				}
				got, err := AppendAck(nil, typ, v, 7, reason, props)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s v%d reason %v: AppendAck % x, struct % x", TypeName(typ), v, reason, got, want)
				}
			}
		}
	}
	if _, err := AppendAck(nil, PUBLISH, V5, 1, Success, nil); err == nil {
		t.Error("AppendAck accepted a PUBLISH type")
	}
}
