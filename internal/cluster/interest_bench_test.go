package cluster

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/ternmq/tern/internal/topic"
)

// BenchmarkInterestRound is one round of a node's interest reaching a peer when one filter of
// n changed: the sender encodes the whole set, the peer decodes it and replaces the node's set
// in its index. A storm of subscriptions runs such rounds back to back.
func BenchmarkInterestRound(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			fs := make([]string, n+1)
			for i := range fs {
				fs[i] = "devices/" + strconv.Itoa(1_000_000+i) + "/cmd"
			}
			l := &links{index: topic.NewIndex[string, struct{}](4096), interest: map[string][]string{}}
			l.setInterestLocked("n2", fs[:n])
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				set := fs[:n]
				if i%2 == 0 {
					set = fs[1 : n+1]
				}
				buf := appendInterest(nil, set, 32<<10)
				var got []string
				for len(buf) > 0 {
					k := int(binary.BigEndian.Uint32(buf))
					f, err := decodeFrame(buf[4 : 4+k])
					if err != nil {
						b.Fatal(err)
					}
					got = append(got, f.Filters...)
					buf = buf[4+k:]
				}
				l.setInterestLocked("n2", got)
			}
		})
	}
}
