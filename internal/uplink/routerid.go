package uplink

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/store"
)

// recordsNS is where the uplinks keep their small records (store.Records).
const recordsNS = "route"

// RouterID returns this router's id: the configured one, else the one generated at the first
// start and kept in the store, so that it stays the same across restarts.
func RouterID(rec store.Records, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	raw, ok, err := rec.Get(recordsNS, "id")
	if err != nil {
		return "", fmt.Errorf("reading the router id: %w", err)
	}
	if ok && config.ValidRouterID(string(raw)) {
		return string(raw), nil
	}
	var b [10]byte
	_, _ = rand.Read(b[:])
	id := "r-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
	if err := rec.Put(recordsNS, "id", []byte(id)); err != nil {
		return "", fmt.Errorf("keeping the router id: %w", err)
	}
	return id, nil
}
