package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tern serve applies memory.release_idle: after a connect storm, once the broker is quiet for
// memory.idle_after, it gives free heap pages back to the OS, and logs how many. The storm is
// `tern bench --idle-conns`, run as its own process, so only the broker's heap is measured.
func TestServeGivesMemoryBackWhenQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildTern(t)
	addr := freeAddr(t)
	srv := serveTern(t, bin, addr, []string{"TERN_MEMORY__IDLE_AFTER=1s"},
		"serve", "--mqtt", addr, "--http", "", "--unix", "", "--data-dir", "", "--log-level", "debug")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	load := exec.CommandContext(ctx, bin, "bench", "--url", "mqtt://"+addr, "--idle-conns", "10000", "--hold", "30s")
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = load.Process.Kill(); _ = load.Wait() }()

	released := regexp.MustCompile(`gave free heap pages back to the OS while quiet" released_bytes=(\d+).*`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		log, _ := os.ReadFile(srv.logPath)
		if m := released.FindSubmatch(log); m != nil {
			n, _ := strconv.Atoi(string(m[1]))
			// How much comes back is what the storm's garbage left in free pages that the
			// runtime's own scavenger had not yet returned; a connection's opening allocates
			// little (about 40 objects), so that is under a megabyte, but never nothing.
			if n < 256<<10 {
				t.Fatalf("released %d bytes after a storm of 10,000 connections, want at least 256 KiB:\n%s", n, m[0])
			}
			t.Logf("%s", m[0])
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no release logged within 30 s of the storm (log in %s):\n%s", srv.logPath, lastLines(log, 5))
		}
		select {
		case <-srv.done:
			t.Fatalf("tern exited:\n%s", lastLines(log, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lastLines is the end of a log, for a failure message.
func lastLines(log []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
