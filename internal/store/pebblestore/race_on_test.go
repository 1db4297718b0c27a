//go:build race

package pebblestore

// raceEnabled scales down tests whose point is volume, not concurrency: the race detector makes
// them ten times slower.
const raceEnabled = true
