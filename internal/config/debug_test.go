package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// The profiling listener is off by default, and is set from the file, the environment or --pprof.
func TestDebugPprofKeys(t *testing.T) {
	cfg, err := Load("", nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Debug != (Debug{}) {
		t.Fatalf("default [debug] %+v, want everything off", cfg.Debug)
	}
	path := filepath.Join(t.TempDir(), "tern.toml")
	if err := os.WriteFile(path, []byte("[debug]\npprof = \"127.0.0.1:6060\"\nblock_rate = 1000\nmutex_fraction = 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(path, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Debug{Pprof: "127.0.0.1:6060", BlockRate: 1000, MutexFraction: 5}); cfg.Debug != want {
		t.Errorf("from the file: %+v, want %+v", cfg.Debug, want)
	}
	cfg, err = Load(path, nil, func() []string { return []string{"TERN_DEBUG__PPROF=[::1]:6061"} })
	if err != nil || cfg.Debug.Pprof != "[::1]:6061" {
		t.Errorf("from the environment: %q, %v", cfg.Debug.Pprof, err)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("pprof", "", "")
	if err := fs.Parse([]string{"--pprof", "localhost:6062"}); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(path, fs, noEnv)
	if err != nil || cfg.Debug.Pprof != "localhost:6062" {
		t.Errorf("from --pprof: %q, %v", cfg.Debug.Pprof, err)
	}
}

// A profile exposes the server's memory: beyond loopback only when allowed in so many words.
func TestDebugPprofValidation(t *testing.T) {
	for _, tc := range []struct {
		debug Debug
		want  string // part of the error; "" is valid
	}{
		{Debug{Pprof: "127.0.0.1:0"}, ""},
		{Debug{Pprof: "[::1]:6060"}, ""},
		{Debug{Pprof: "localhost:6060"}, ""},
		{Debug{Pprof: "0.0.0.0:6060"}, "not a loopback address"},
		{Debug{Pprof: ":6060"}, "not a loopback address"},
		{Debug{Pprof: "192.0.2.7:6060"}, "not a loopback address"},
		{Debug{Pprof: "example.com:6060"}, "not a loopback address"},
		{Debug{Pprof: "0.0.0.0:6060", PprofAllowRemote: true}, ""},
		{Debug{Pprof: "6060"}, "debug.pprof"},
		{Debug{BlockRate: -1}, "cannot be negative"},
		{Debug{MutexFraction: -1}, "cannot be negative"},
		{Debug{Pprof: "127.0.0.1:6060", BlockRate: 1, MutexFraction: 1}, ""},
	} {
		c := Default()
		c.Debug = tc.debug
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.debug, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one with %q", tc.debug, err, tc.want)
		}
	}
}

// The refusal reaches Load, and so tern serve and tern config check.
func TestDebugPprofRemoteRefusedOnLoad(t *testing.T) {
	_, err := Load("", nil, func() []string { return []string{"TERN_DEBUG__PPROF=0.0.0.0:6060"} })
	if err == nil || !strings.Contains(err.Error(), "pprof_allow_remote") {
		t.Fatalf("Load: %v, want the refusal naming debug.pprof_allow_remote", err)
	}
	cfg, err := Load("", nil, func() []string {
		return []string{"TERN_DEBUG__PPROF=0.0.0.0:6060", "TERN_DEBUG__PPROF_ALLOW_REMOTE=true"}
	})
	if err != nil || !cfg.Debug.PprofAllowRemote {
		t.Fatalf("allowed remote: %+v, %v", cfg.Debug, err)
	}
}
