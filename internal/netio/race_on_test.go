//go:build race

package netio

// raceEnabled skips allocation counts: under the race detector sync.Pool drops a share of what
// is put back on purpose, so pooled objects are allocated again.
const raceEnabled = true
