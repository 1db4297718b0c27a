package mqttclient

import (
	"crypto/tls"
	"slices"
	"testing"
)

func TestParseGroups(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []tls.CurveID
		bad  bool
	}{
		{in: "", want: nil},
		{in: "x25519", want: []tls.CurveID{tls.X25519}},
		{in: " X25519MLKEM768, P-256 ", want: []tls.CurveID{tls.X25519MLKEM768, tls.CurveP256}},
		{in: "x448", bad: true},
		{in: "x25519,", bad: true},
	} {
		got, err := ParseGroups(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseGroups(%q) = %v, want an error", c.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseGroups(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}
