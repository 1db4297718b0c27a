package server_test

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/config"
)

// getText fetches url with net/http within waitTimeout and returns the status and body.
func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// TestPprofEndpoint: with [debug] pprof set, net/http/pprof's profiles are served on that
// listener, and on it only: the public HTTP face answers /debug/pprof with 404.
func TestPprofEndpoint(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.Debug.Pprof = "127.0.0.1:0" })
	addr := srv.Addr("pprof")
	if addr == "" {
		t.Fatal("no pprof listener")
	}
	base := "http://" + addr + "/debug/pprof/"

	code, body := getText(t, base+"heap?debug=1")
	if code != http.StatusOK || !strings.HasPrefix(body, "heap profile:") || !strings.Contains(body, "# runtime.MemStats") {
		t.Errorf("heap?debug=1: %d %.200q", code, body)
	}
	// The goroutine dump names the server's own goroutines (the MQTT listener's accept loop).
	code, body = getText(t, base+"goroutine?debug=1")
	if code != http.StatusOK || !strings.HasPrefix(body, "goroutine profile: total ") ||
		!strings.Contains(body, "github.com/ternmq/tern/internal/mqtt.(*Server).Serve") {
		t.Errorf("goroutine?debug=1: %d %.300q", code, body)
	}
	// Without debug=1 a profile is pprof's gzipped protobuf, what go tool pprof reads.
	code, body = getText(t, base+"goroutine")
	if code != http.StatusOK || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("goroutine: %d, not gzipped: %.40q", code, body)
	}
	code, body = getText(t, base)
	if code != http.StatusOK || !strings.Contains(body, "Types of profiles available") {
		t.Errorf("index: %d %.200q", code, body)
	}

	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine", "/debug/pprof/cmdline"} {
		if code, body := getText(t, "http://"+srv.Addr("http")+path); code != http.StatusNotFound {
			t.Errorf("the public HTTP face serves %s: %d %.100q", path, code, body)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: waitTimeout}
	if resp, err := hc.Get(base); err == nil {
		resp.Body.Close()
		t.Error("the pprof listener still answers after Close")
	}
}

// TestPprofOffByDefault: no [debug] pprof, no profiling listener.
func TestPprofOffByDefault(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	if addr := srv.Addr("pprof"); addr != "" {
		t.Fatalf("a pprof listener on %s without debug.pprof", addr)
	}
}

// TestPprofProfileRates: debug.mutex_fraction and debug.block_rate are applied when the
// profiling listener starts, and reset by Close. Not parallel: the rates are the process's.
func TestPprofProfileRates(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.Debug.Pprof = "127.0.0.1:0"
		c.Debug.BlockRate = 1
		c.Debug.MutexFraction = 3
	})
	if srv.Addr("pprof") == "" {
		t.Fatal("no pprof listener")
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 3 { // -1 reads without changing
		t.Errorf("mutex profile fraction %d, want 3", got)
	}
	// One goroutine of an unbuffered exchange always parks, a blocking event that a rate of
	// 1 ns records.
	ch := make(chan int)
	go func() { ch <- 1 }()
	<-ch
	code, body := getText(t, "http://"+srv.Addr("pprof")+"/debug/pprof/block?debug=1")
	if code != http.StatusOK || !strings.Contains(body, "TestPprofProfileRates") {
		t.Errorf("block?debug=1 shows no event of this test: %d %.300q", code, body)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 0 {
		t.Errorf("mutex profile fraction %d after Close, want 0", got)
	}
}

// TestPprofCloseEndsProfile: Close ends a running CPU profile through its request's context,
// instead of leaving it to run out its seconds. The profile asks for a minute; the client gives
// up long before.
func TestPprofCloseEndsProfile(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.Debug.Pprof = "127.0.0.1:0" })
	base := "http://" + srv.Addr("pprof") + "/debug/pprof/"
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		hc := &http.Client{Timeout: time.Minute + waitTimeout}
		resp, err := hc.Get(base + "profile?seconds=60")
		if err != nil {
			done <- result{err: err}
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, err}
	}()
	eventually(t, waitTimeout, "the CPU profile to be running", func() bool {
		_, body := getText(t, base+"goroutine?debug=1")
		return strings.Contains(body, "net/http/pprof.Profile")
	})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.code != http.StatusOK {
			t.Fatalf("the profile ended with %d, %v", r.code, r.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the CPU profile still runs after Close")
	}
}
