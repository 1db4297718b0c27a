package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetArgs(args)
	defer rootCmd.SetArgs(nil)
	err := rootCmd.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := runCLI(t, args...)
		if err != nil || !strings.HasPrefix(out, "tern ") || !strings.Contains(out, runtime.Version()) {
			t.Fatalf("%v: %q %v", args, out, err)
		}
	}
}

func TestConfigCheckAndDump(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(bad, []byte("[mqtt]\nmax_packet_sise = 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("[mqtt]\nmax_packet_size = 4096\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "config", "check", bad); err == nil || !strings.Contains(err.Error(), "did you mean mqtt.max_packet_size") {
		t.Fatalf("check of a misspelled key: %v", err)
	}
	if out, err := runCLI(t, "config", "check", good); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("check of a good file: %q %v", out, err)
	}
	out, err := runCLI(t, "config", "dump", "--config", good)
	if err != nil || !strings.Contains(out, "max_packet_size = 4096") {
		t.Fatalf("dump: %v\n%s", err, out)
	}
}

// One name per concept: --server and --cafile everywhere; the earlier --url (stats, cluster) and
// --cacert still work.
func TestRenamedFlagsStillWork(t *testing.T) {
	for _, args := range [][]string{
		{"stats", "--url", "http://127.0.0.1:1"},
		{"stats", "--server", "http://127.0.0.1:1", "--cacert", "x.pem"},
		{"cluster", "status", "--url", "http://127.0.0.1:1"},
	} {
		_, err := runCLI(t, args...)
		if err == nil || strings.Contains(err.Error(), "unknown flag") {
			t.Errorf("%v: %v, want the flag taken", args, err)
		}
	}
}

// tern serve --pprof sets debug.pprof, and a non-loopback address is refused before anything
// starts. The bad log format makes the start fail whatever --pprof does, so a flag that went
// nowhere shows as a missing refusal rather than a server that runs.
func TestServePprofFlag(t *testing.T) {
	_, err := runCLI(t, "serve", "--pprof", "0.0.0.0:6060", "--log-format", "bogus", "--data-dir", "",
		"--mqtt", "127.0.0.1:0", "--http", "", "--unix", "")
	if err == nil || !strings.Contains(err.Error(), "debug.pprof 0.0.0.0:6060 is not a loopback address") {
		t.Fatalf("serve --pprof 0.0.0.0:6060: %v, want the loopback refusal", err)
	}
}
