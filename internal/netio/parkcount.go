package netio

import "sync/atomic"

// ParkCounter is a Handler that has its parked connections counted: while its watch is armed
// (parked, with no goroutine running its connection) the poller adds one to ParkedCount's
// counter, and takes it back when the watch stops being armed. A face returns one counter for
// all its connections, for its metrics. The counter is the handler's, not the watch's, so that
// a watch, which every parked connection holds, does not carry a pointer for it.
type ParkCounter interface {
	Handler
	ParkedCount() *atomic.Int64
}
