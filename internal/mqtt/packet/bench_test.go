package packet

import (
	"bytes"
	"testing"
)

// The hot-path shapes: a QoS 1 PUBLISH with a 128-byte payload, bare in
// v3.1.1 and with two user properties in v5.
func benchPublish(v Version) *Publish {
	p := &Publish{QoS: 1, Topic: bs("site/7/building-1/floor-2/temperature"), PacketID: 4242,
		Payload: bytes.Repeat([]byte{0xA5}, 128)}
	if v == V5 {
		p.Props = props(PropUser, [2]string{"trace-id", "4bf92f3577b34da6"},
			PropUser, [2]string{"origin", "gateway-12"})
	}
	return p
}

func benchConnect() []byte {
	for _, s := range v5Samples() {
		if s.name == "connect/full" {
			b, err := s.p.Append(nil, V5)
			if err != nil {
				panic(err)
			}
			return b
		}
	}
	panic("no connect/full fixture")
}

func benchSubscribe() []byte {
	s := &Subscribe{PacketID: 9, Props: props(PropSubscriptionID, 12),
		Subscriptions: []Subscription{
			{Filter: bs("site/+/building-1/#"), QoS: 1},
			{Filter: bs("alerts/critical"), QoS: 2, NoLocal: true, RetainHandling: 1},
			{Filter: bs("$share/workers/jobs/+"), QoS: 1},
		}}
	b, err := s.Append(nil, V5)
	if err != nil {
		panic(err)
	}
	return b
}

func benchEncode(b *testing.B, v Version) {
	p := benchPublish(v)
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	var err error
	for b.Loop() {
		if dst, err = p.Append(dst[:0], v); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(dst)))
}

func benchDecode(b *testing.B, wire []byte, p Packet, v Version) {
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		_, flags, _, hl, err := ParseFixedHeader(wire)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Decode(flags, wire[hl:], v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishEncodeV311(b *testing.B) { benchEncode(b, V311) }
func BenchmarkPublishEncodeV5(b *testing.B)   { benchEncode(b, V5) }

func BenchmarkPublishDecodeV311(b *testing.B) {
	benchDecode(b, mustAppend(b, benchPublish(V311), V311), &Publish{}, V311)
}

func BenchmarkPublishDecodeV5(b *testing.B) {
	benchDecode(b, mustAppend(b, benchPublish(V5), V5), &Publish{}, V5)
}

func BenchmarkConnectDecode(b *testing.B) { benchDecode(b, benchConnect(), &Connect{}, V5) }

func BenchmarkSubscribeDecode(b *testing.B) { benchDecode(b, benchSubscribe(), &Subscribe{}, V5) }

// loopReader serves data over and over, as an endless stream.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// BenchmarkReaderPublish frames and decodes PUBLISH packets from a stream.
func BenchmarkReaderPublish(b *testing.B) {
	one := mustAppend(b, benchPublish(V5), V5)
	r := NewReader(&loopReader{data: bytes.Repeat(one, 64)}, 8192, 0)
	var p Publish
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	for b.Loop() {
		typ, flags, body, err := r.Next()
		if err != nil || typ != PUBLISH {
			b.Fatal(typ, err)
		}
		if err := p.Decode(flags, body, V5); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHotPathAllocs holds the zero-allocation promise outside benchmarks,
// so a regression fails `go test`, not just a number in a report.
func TestHotPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("alloc counts")
	}
	for _, v := range []Version{V311, V5} {
		p := benchPublish(v)
		dst := make([]byte, 0, 512)
		if n := testing.AllocsPerRun(200, func() { dst, _ = p.Append(dst[:0], v) }); n != 0 {
			t.Errorf("PUBLISH v%d encode: %v allocs", v, n)
		}
		wire := mustAppend(t, p, v)
		var q Publish
		decode := func(wire []byte, q Packet, v Version) func() {
			return func() {
				_, flags, _, hl, _ := ParseFixedHeader(wire)
				if err := q.Decode(flags, wire[hl:], v); err != nil {
					t.Fatal(err)
				}
			}
		}
		if n := testing.AllocsPerRun(200, decode(wire, &q, v)); n != 0 {
			t.Errorf("PUBLISH v%d decode: %v allocs", v, n)
		}
		if n := testing.AllocsPerRun(200, decode(benchConnect(), &Connect{}, V5)); n != 0 {
			t.Errorf("CONNECT decode: %v allocs", n)
		}
		if n := testing.AllocsPerRun(200, decode(benchSubscribe(), &Subscribe{}, V5)); n != 0 {
			t.Errorf("SUBSCRIBE decode: %v allocs", n)
		}
	}
	// Error paths allocate nothing either: a hostile peer cannot make
	// rejection expensive.
	bad := unhex(t, "36 05 0001 74 0001")
	var q Publish
	if n := testing.AllocsPerRun(200, func() { _ = q.Decode(bad[0]&0x0F, bad[2:], V5) }); n != 0 {
		t.Errorf("rejecting a PUBLISH: %v allocs", n)
	}
}
