package memtune

import (
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

const mib = 1 << 20

// The policy releases once per quiet spell, only after enough quiet looks, only when the
// runtime holds well beyond the live heap, and again only after the process was busy.
func TestPolicy(t *testing.T) {
	busy := func(prev Sample) Sample { // a look that saw a burst of allocation
		prev.Allocated += 100 * mib
		return prev
	}
	quiet := func(prev Sample) Sample { // a look that saw keep-alives only
		prev.Allocated += 10 << 10
		return prev
	}
	p := newPolicy(2)
	s := Sample{Allocated: 500 * mib, Live: 40 * mib, Held: 90 * mib}
	steps := []struct {
		next func(Sample) Sample
		want bool
		why  string
	}{
		{func(s Sample) Sample { return s }, false, "the first look only sets the baseline"},
		{busy, false, "busy"},
		{quiet, false, "one quiet look is not yet idle"},
		{quiet, true, "two quiet looks with 50 MiB held beyond the live heap"},
		{quiet, false, "still quiet: already released"},
		{quiet, false, "still quiet: already released"},
		{busy, false, "busy again re-arms"},
		{quiet, false, "one quiet look"},
		{quiet, true, "idle again"},
	}
	for i, st := range steps {
		s = st.next(s)
		if got := p.observe(s); got != st.want {
			t.Fatalf("look %d (%s): release %v, want %v", i, st.why, got, st.want)
		}
	}
}

func TestPolicyLeavesWhatIsNotWorthACollection(t *testing.T) {
	p := newPolicy(1)
	s := Sample{Allocated: 1, Live: 400 * mib, Held: 440 * mib} // 40 MiB over: under live/8
	for i := range 5 {
		s.Allocated += 1024
		if p.observe(s) {
			t.Fatalf("look %d released with only %d MiB held beyond a live heap of %d MiB", i, (s.Held-s.Live)/mib, s.Live/mib)
		}
	}
	s.Held = 460 * mib // 60 MiB over: past live/8
	s.Allocated += 1024
	if !p.observe(s) {
		t.Fatal("60 MiB beyond a live heap of 400 MiB, quiet: not released")
	}
}

// A big heap may allocate more per look and still be quiet: keep-alives on a million
// connections allocate more than on a thousand.
func TestPolicyQuietScalesWithTheHeap(t *testing.T) {
	p := newPolicy(1)
	s := Sample{Allocated: 1, Live: 4096 * mib, Held: 8192 * mib}
	p.observe(s)
	s.Allocated += 32 * mib // under live/64 = 64 MiB
	if !p.observe(s) {
		t.Fatal("32 MiB allocated over a 4 GiB live heap counted as busy")
	}
	small := newPolicy(1)
	s = Sample{Allocated: 1, Live: 8 * mib, Held: 64 * mib}
	small.observe(s)
	s.Allocated += 2 * mib // over the 1 MiB floor
	if small.observe(s) {
		t.Fatal("2 MiB allocated over an 8 MiB live heap counted as quiet")
	}
}

// watch reads at every tick and frees when the policy says so, until its context ends.
func TestWatchFreesWhenQuiet(t *testing.T) {
	samples := []Sample{
		{Allocated: 0, Live: 10 * mib, Held: 60 * mib},
		{Allocated: 1024, Live: 10 * mib, Held: 60 * mib},
		{Allocated: 2048, Live: 10 * mib, Held: 60 * mib},
		{Allocated: 3072, Live: 10 * mib, Held: 60 * mib},
	}
	ticks := make(chan time.Time)
	reads, freed := 0, []int{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch(ctx, ticks, func() Sample { reads++; return samples[reads-1] }, func(Sample) { freed = append(freed, reads) }, 2)
	}()
	for range samples {
		ticks <- time.Time{}
	}
	cancel()
	<-done
	if reads != len(samples) || len(freed) != 1 || freed[0] != 3 {
		t.Fatalf("reads %d, freed after reads %v; want %d reads and one release after the third", reads, freed, len(samples))
	}
}

// A small heap is released from half a megabyte over: a storm of a few thousand idle
// connections leaves about a megabyte.
func TestPolicyReleasesASmallHeap(t *testing.T) {
	p := newPolicy(1)
	s := Sample{Allocated: 1, Live: 3 * mib, Held: 3*mib + mib/4}
	for i := range 3 {
		s.Allocated += 1024
		if p.observe(s) {
			t.Fatalf("look %d released a quarter of a megabyte beyond a live heap of 3 MiB", i)
		}
	}
	s.Held = 4 * mib
	s.Allocated += 1024
	if !p.observe(s) {
		t.Fatal("1 MiB beyond a live heap of 3 MiB, quiet: not released")
	}
}

var holes [][]byte

// Held is what a release can act on: right after one, it is the live heap, even when small
// objects dropped here and there leave megabytes of room inside spans that no release returns.
// (Counting that room, an idle heap of small long-lived objects looked worth a release after
// every burst, and the release returned little.)
func TestHeldIsWhatAReleaseCanReturn(t *testing.T) {
	t.Cleanup(func() {
		// The holes become garbage: collect them and give their pages back here, so that the
		// tests after this one start from a heap without them.
		holes = nil
		debug.FreeOSMemory()
	})
	all := make([][]byte, 64<<10)
	for i := range all {
		all[i] = make([]byte, 64)
	}
	for i := 0; i < len(all); i += 2 {
		holes = append(holes, all[i])
	}
	all = nil
	r := newReader()
	release(quietLog())(r.read())
	after := r.read()
	unused := []metrics.Sample{{Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(unused)
	if u64(unused[0]) < mib {
		t.Skipf("the holes did not show as unused (%d KiB)", u64(unused[0])>>10)
	}
	if after.Held > after.Live+mib/2 {
		t.Fatalf("after a release: held %d KiB beyond a live heap of %d KiB (%d KiB unused in spans)",
			(after.Held-after.Live)>>10, after.Live>>10, u64(unused[0])>>10)
	}
}

var keep [][]byte

// The real release: what a burst left free goes back to the OS, and the reader sees it.
func TestReleaseGivesFreePagesBack(t *testing.T) {
	for range 64 * 16 {
		keep = append(keep, make([]byte, 64<<10))
	}
	keep = nil
	runtime.GC() // the burst is garbage now: its pages are free, still held
	r := newReader()
	before := r.read()
	if before.Held < before.Live+32*mib {
		t.Skipf("the runtime already gave the burst back (held %d, live %d)", before.Held, before.Live)
	}
	release(quietLog())(before)
	after := r.read()
	free := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(free)
	// The burst's 64 MiB of free pages must be gone. A collection that ends between the release
	// and this read may free a little more garbage (the race detector's, the runtime's own): 2 MiB
	// of it was seen once under -race, so what is still free is held to a few MiB, not to none.
	if after.Held > before.Held-32*mib || u64(free[0]) > 8*mib {
		t.Fatalf("after release: held %d MiB (was %d), free and not returned %d KiB", after.Held/mib, before.Held/mib, u64(free[0])>>10)
	}
}

// keepLimit restores the process's memory limit when the test ends.
func keepLimit(t *testing.T) {
	was := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(was) })
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// memory.limit wins; without it the limit is the configured share of the container's; a
// container without a limit, or a ratio of 0, leaves none.
func TestLimit(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set for this process: it takes precedence over the container's")
	}
	keepLimit(t)
	container := func() (uint64, error) { return 1 << 30, nil }
	none := func() (uint64, error) { return 0, memlimit.ErrNoLimit }
	for _, c := range []struct {
		name string
		cfg  Config
		from memlimit.Provider
		want int64
	}{
		{"memory.limit", Config{Limit: 256 << 20, ContainerRatio: 0.9}, container, 256 << 20},
		{"the container's", Config{ContainerRatio: 0.5}, container, 512 << 20},
		{"no container limit", Config{ContainerRatio: 0.9}, none, math.MaxInt64},
		{"off", Config{}, container, math.MaxInt64},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		got := applyLimit(c.cfg, c.from, quietLog())
		if now := debug.SetMemoryLimit(-1); got != c.want || now != c.want {
			t.Errorf("%s: applyLimit says %d, the runtime has %d; want %d", c.name, got, now, c.want)
		}
	}
}

// A GOMEMLIMIT given to the process is left alone.
func TestLimitLeavesGOMEMLIMIT(t *testing.T) {
	keepLimit(t)
	t.Setenv("GOMEMLIMIT", "300MiB")
	debug.SetMemoryLimit(300 << 20) // what the runtime took from it at start
	got := applyLimit(Config{ContainerRatio: 0.9}, func() (uint64, error) { return 1 << 30, nil }, quietLog())
	if now := debug.SetMemoryLimit(-1); got != 300<<20 || now != 300<<20 {
		t.Fatalf("applyLimit says %d, the runtime has %d; want GOMEMLIMIT's %d", got, now, 300<<20)
	}
}
