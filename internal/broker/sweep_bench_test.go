package broker

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkSweep is one expiry sweep (every Config.SweepInterval, a second by default) over n
// sessions with nothing to sweep: connected ones, and persistent ones whose clients are away
// with empty queues, a million-device broker's usual state.
func BenchmarkSweep(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, away := range []bool{false, true} {
			name := strconv.Itoa(n) + "/connected"
			if away {
				name = strconv.Itoa(n) + "/away"
			}
			b.Run(name, func(b *testing.B) {
				cfg := DefaultConfig()
				cfg.SweepInterval = 0 // swept by the benchmark only
				br, err := New(cfg, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer br.Close()
				for i := range n {
					c, _, err := br.Connect(context.Background(), ConnectRequest{ClientID: "d" + strconv.Itoa(i),
						Expiry: 3600, Sink: &sink{}})
					if err != nil {
						b.Fatal(err)
					}
					c.Start()
					if away {
						c.Disconnect(DisconnectRequest{})
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					br.sweep(cfg.SweepBudget)
				}
			})
		}
	}
}
