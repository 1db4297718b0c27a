//go:build unix

package certs

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
)

// failingReloader always fails, as a reloader with a broken file does.
type failingReloader struct{}

func (failingReloader) Reload() error { return errors.New("users file: bad line 3") }

// lineSink hands each log record to the test as it is written (the text handler writes a record
// in one Write), so the test waits for the outcome itself rather than for time to pass.
type lineSink chan string

func (l lineSink) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
}

// TestWatchSIGHUP sends the test process SIGHUP: every reloader runs, in order, a failure does
// not stop the rest, each outcome is logged, and the ServerTLS really re-reads its files. Not
// parallel: the signal is process-wide.
func TestWatchSIGHUP(t *testing.T) {
	f := newFixture(t)
	s := f.serverTLS(t, ServerTLSOptions{})
	second := f.serverTLS(t, ServerTLSOptions{})
	if _, _, err := Issue(f.caDir, f.keyDir, "server", IssueOptions{Server: true}); err != nil {
		t.Fatal(err)
	}
	want := readCert(t, f.certFile).SerialNumber

	lines := make(lineSink, 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	WatchSIGHUP(ctx, slog.New(slog.NewTextHandler(lines, nil)), s, failingReloader{}, second)

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 3 {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-time.After(10 * time.Second):
			t.Fatalf("after SIGHUP, only these log records within 10s: %q", got)
		}
	}
	for i, want := range []string{"level=INFO", "level=ERROR", "level=INFO"} {
		if !strings.Contains(got[i], want) {
			t.Errorf("record %d = %q, want %s", i, got[i], want)
		}
	}
	if !strings.Contains(got[1], "bad line 3") {
		t.Errorf("the failure's error is not logged: %q", got[1])
	}
	for i, r := range []*ServerTLS{s, second} {
		if r.Certificate().SerialNumber.Cmp(want) != 0 {
			t.Errorf("reloader %d: SIGHUP did not reload the certificate", i)
		}
	}
	if !strings.Contains(got[0], want.Text(16)) {
		t.Errorf("the log does not name the new certificate: %q", got[0])
	}
}
