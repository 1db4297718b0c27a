package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// dirDigest lists a directory's files with sizes and content hashes.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%s %d %x", e.Name(), len(b), sha256.Sum256(b)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// runTern runs the binary to its end (within a deadline) and returns its output and exit code.
func runTern(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("tern %v: %v\n%s", args, err, out)
	return "", -1
}

// TestDamagedDataDirRefusedUntouched: tern used to start on a data directory whose manifest
// marker was gone with an empty store, deleting the old tables and logs, and with authentication
// off ("no users"). Now `tern serve` refuses, says what is damaged, and changes no file;
// `tern store check` reports the damage with a non-zero status, and changes nothing either.
func TestDamagedDataDirRefusedUntouched(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildTern(t)
	dir := t.TempDir()
	if out, code := runTern(t, bin, "user", "add", "alice", "--password", "secret", "--data-dir", dir); code != 0 {
		t.Fatalf("user add: %d\n%s", code, out)
	}
	addr := freeAddr(t)
	srv := startTernProcess(t, bin, dir, addr)
	srv.stop(t)
	if out, code := runTern(t, bin, "store", "check", "--data-dir", dir); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("check of a healthy directory: %d\n%s", code, out)
	}

	markers, _ := filepath.Glob(filepath.Join(dir, "marker.manifest.*"))
	if len(markers) != 1 {
		t.Fatalf("manifest markers: %v", markers)
	}
	if err := os.Remove(markers[0]); err != nil {
		t.Fatal(err)
	}
	before := dirDigest(t, dir)

	out, code := runTern(t, bin, "serve", "--mqtt", freeAddr(t), "--http", "", "--unix", "", "--data-dir", dir)
	if code == 0 || !strings.Contains(out, "marker.manifest") || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("serve on a damaged directory: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "no users") {
		t.Fatalf("tern started without its users:\n%s", out)
	}
	if after := dirDigest(t, dir); after != before {
		t.Fatalf("a refused start changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	out, code = runTern(t, bin, "store", "check", "--data-dir", dir)
	if code == 0 || !strings.Contains(out, "damaged:") || !strings.Contains(out, "marker.manifest") {
		t.Fatalf("check of a damaged directory: exit %d\n%s", code, out)
	}
	if after := dirDigest(t, dir); after != before {
		t.Fatalf("store check changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
