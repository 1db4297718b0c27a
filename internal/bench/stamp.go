package bench

import "encoding/binary"

// Every bench payload starts with a stamp:
//
//	[0:4)   run id, so messages of another run (or anyone else's) are recognised and ignored
//	[4:8)   publisher index; the top bit marks a warm-up message
//	[8:16)  sequence number within the publisher, from 0
//	[16:24) send time: monotonic nanoseconds since the run's shared start (at a fixed rate, the
//	        time the message was scheduled: see publisher.appendOne)
//
// The rest of the payload is filler up to --size.
const (
	stampLen   = 24
	warmupFlag = 1 << 31
)

// MinSize is the smallest payload the bench can send.
const MinSize = stampLen

type stamp struct {
	run    uint32
	pub    uint32 // without the warm-up flag
	warmup bool
	seq    uint64
	sentNs int64
}

func putStamp(b []byte, run, pub uint32, warmup bool, seq uint64, sentNs int64) {
	if warmup {
		pub |= warmupFlag
	}
	binary.BigEndian.PutUint32(b[0:4], run)
	binary.BigEndian.PutUint32(b[4:8], pub)
	binary.BigEndian.PutUint64(b[8:16], seq)
	binary.BigEndian.PutUint64(b[16:24], uint64(sentNs))
}

// readStamp parses a payload's stamp; ok is false when the payload is too short.
func readStamp(b []byte) (s stamp, ok bool) {
	if len(b) < stampLen {
		return s, false
	}
	s.run = binary.BigEndian.Uint32(b[0:4])
	p := binary.BigEndian.Uint32(b[4:8])
	s.pub, s.warmup = p&^warmupFlag, p&warmupFlag != 0
	s.seq = binary.BigEndian.Uint64(b[8:16])
	s.sentNs = int64(binary.BigEndian.Uint64(b[16:24]))
	return s, true
}
