package mqttclient

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// groupNames are the TLS key exchanges a client can be limited to, by the names users write.
var groupNames = map[string]tls.CurveID{
	"x25519mlkem768": tls.X25519MLKEM768,
	"x25519":         tls.X25519,
	"p256":           tls.CurveP256,
	"p384":           tls.CurveP384,
	"p521":           tls.CurveP521,
}

// ParseGroups reads a comma-separated list of TLS key exchanges (x25519mlkem768, x25519, p256,
// p384, p521; case and '-' ignored) for Options.Groups. Empty means Go's defaults (nil).
func ParseGroups(list string) ([]tls.CurveID, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var out []tls.CurveID
	for _, name := range strings.Split(list, ",") {
		key := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(name), "-", ""))
		id, ok := groupNames[key]
		if !ok {
			return nil, fmt.Errorf("unknown TLS key exchange %q (use x25519mlkem768, x25519, p256, p384 or p521)", strings.TrimSpace(name))
		}
		out = append(out, id)
	}
	return out, nil
}
