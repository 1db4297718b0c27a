package tlsrec

import (
	"crypto/tls"
	"testing"
)

// BenchmarkWrite is one small message (a PUBLISH to an idle device) written to a connection
// that stays awake, and to one that is parked, which builds its AEAD for the write and drops it
// after: the difference is what a delivery to an idle TLS connection costs more.
func BenchmarkWrite(b *testing.B) {
	msg := make([]byte, 64)
	for _, parked := range []bool{false, true} {
		name := map[bool]string{false: "awake", true: "parked"}[parked]
		b.Run(name, func(b *testing.B) {
			c := tookOver(b, tls.TLS_AES_128_GCM_SHA256, nil)
			if parked {
				c.Park()
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
