// Package memtune applies the process's memory policy: an optional soft limit on what the Go
// runtime holds, and giving the heap's free pages back to the operating system once the broker
// has gone quiet.
//
// Why the second: Go sizes its heap at twice what was live at the last collection (GOGC=100)
// and keeps that much resident, expecting to fill it again before the next collection. A broker
// holding many idle connections is mostly long-lived state and allocates next to nothing while
// its clients are quiet, so after a connect storm it would keep about twice its live heap for
// as long as it stays idle. When a look finds the process quiet and holding well beyond its
// live heap, memtune collects and returns the free pages once (debug.FreeOSMemory); they come
// back on demand when traffic does. Busy, it does nothing: a look is one runtime/metrics read.
package memtune

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// Config is the policy (config.Memory).
type Config struct {
	// Limit is the soft limit on the runtime's memory, in bytes (debug.SetMemoryLimit). 0: the
	// GOMEMLIMIT variable when it is set, else ContainerRatio of the container's memory limit.
	Limit int64
	// ContainerRatio is the share of the cgroup's memory limit (v1 or v2) the soft limit is set
	// to when Limit is 0 and GOMEMLIMIT is not set; 0, or no cgroup limit: none. Without it a
	// broker in a container grows its heap to twice its live size and is killed by the kernel
	// before its collector ever sees the limit.
	ContainerRatio float64
	// ReleaseIdle gives the heap's free pages back once the process has been quiet for
	// IdleAfter.
	ReleaseIdle bool
	IdleAfter   time.Duration
}

// Sample is what one look reads of the runtime.
type Sample struct {
	// Allocated is every byte allocated on the heap since the process started.
	Allocated uint64
	// Live is the heap that survived the last collection.
	Live uint64
	// Held is the heap memory a release can act on: objects (live, or garbage not yet swept)
	// and free pages not yet returned to the OS. It leaves out the unused room inside spans
	// that hold live objects, which no release gives back: counting it, a heap of small
	// long-lived objects looked worth a release when a collection would return little.
	Held uint64
}

// policy decides, one look at a time, when to give memory back.
type policy struct {
	// looks is the number of consecutive quiet looks that make the process idle.
	looks int
	quiet int
	// armed: the process was busy since the last release. Without it an idle process whose
	// fragmentation alone exceeds the slack would collect at every look.
	armed bool
	last  uint64
	seen  bool
}

func newPolicy(looks int) *policy {
	if looks < 1 {
		looks = 1
	}
	return &policy{looks: looks, armed: true}
}

// quietBytes is how much a look may see allocated and still call the process quiet: a broker
// answering keep-alives and heartbeats allocates a little; a broker moving messages, far more.
func quietBytes(live uint64) uint64 { return max(1<<20, live/64) }

// slack is what the runtime may hold beyond the live heap without a release being worth a
// collection. The floor is small: a quiet broker's collection takes a few milliseconds of one
// core, once per quiet spell (policy.armed), and a storm of a few thousand connections leaves
// about a megabyte behind.
func slack(live uint64) uint64 { return max(512<<10, live/8) }

// observe takes one look and says whether to release now.
func (p *policy) observe(s Sample) bool {
	if !p.seen {
		p.seen, p.last = true, s.Allocated
		return false
	}
	allocated := s.Allocated - p.last
	p.last = s.Allocated
	if allocated >= quietBytes(s.Live) {
		p.quiet, p.armed = 0, true
		return false
	}
	p.quiet++
	if !p.armed || p.quiet < p.looks || s.Held <= s.Live+slack(s.Live) {
		return false
	}
	p.armed = false
	return true
}

var sampleNames = []string{
	"/gc/heap/allocs:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
}

// reader reads Samples, reusing its buffer.
type reader []metrics.Sample

func newReader() reader {
	r := make(reader, len(sampleNames))
	for i, n := range sampleNames {
		r[i].Name = n
	}
	return r
}

func (r reader) read() Sample {
	metrics.Read(r)
	return Sample{Allocated: u64(r[0]), Live: u64(r[1]), Held: u64(r[2]) + u64(r[3])}
}

// u64 is a sample's value; 0 for a metric this runtime does not have (Held then reads low, so
// nothing is released).
func u64(s metrics.Sample) uint64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s.Value.Uint64()
}

// Apply sets the limit and, with ReleaseIdle, watches the heap until ctx ends.
func Apply(ctx context.Context, c Config, log *slog.Logger) {
	applyLimit(c, memlimit.FromCgroup, log)
	if !c.ReleaseIdle || c.IdleAfter <= 0 {
		return
	}
	// Two looks per IdleAfter: the process is idle after two quiet looks in a row, so a
	// release comes between IdleAfter and 1.5 × IdleAfter after the last burst.
	every := max(c.IdleAfter/2, 100*time.Millisecond)
	t := time.NewTicker(every)
	go func() {
		defer t.Stop()
		watch(ctx, t.C, newReader().read, release(log), 2)
	}()
}

// applyLimit sets the soft limit as c says, asking container for the cgroup's limit, and
// returns it (math.MaxInt64: none).
func applyLimit(c Config, container memlimit.Provider, log *slog.Logger) int64 {
	switch {
	case c.Limit > 0:
		debug.SetMemoryLimit(c.Limit)
		log.Info("memory limit", "bytes", c.Limit, "from", "memory.limit")
		return c.Limit
	case c.ContainerRatio <= 0:
		return debug.SetMemoryLimit(-1)
	}
	// memlimit leaves a GOMEMLIMIT that is set alone, and reads both cgroup versions.
	limit, err := memlimit.Set(memlimit.WithRatio(c.ContainerRatio), memlimit.WithProvider(container))
	switch {
	case err != nil:
		log.Warn("memory limit: the container's could not be read", "err", err)
	case os.Getenv("GOMEMLIMIT") != "":
		log.Info("memory limit", "bytes", limit, "from", "GOMEMLIMIT")
	case limit != math.MaxInt64:
		log.Info("memory limit", "bytes", limit, "from", "the container's limit", "ratio", c.ContainerRatio)
	}
	return limit
}

// watch looks at every tick and releases when the policy says so.
func watch(ctx context.Context, ticks <-chan time.Time, read func() Sample, free func(Sample), looks int) {
	p := newPolicy(looks)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			if s := read(); p.observe(s) {
				free(s)
			}
		}
	}
}

// release collects and returns free pages to the OS, logging what it gave back.
func release(log *slog.Logger) func(Sample) {
	released := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	return func(before Sample) {
		metrics.Read(released)
		was := u64(released[0])
		start := time.Now()
		debug.FreeOSMemory()
		metrics.Read(released)
		now := u64(released[0])
		log.Debug("memory: gave free heap pages back to the OS while quiet",
			"released_bytes", now-min(was, now),
			"live_bytes", before.Live, "held_bytes", before.Held, "took", time.Since(start))
	}
}
