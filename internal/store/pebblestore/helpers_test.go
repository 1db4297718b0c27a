package pebblestore

import (
	"log/slog"
	"testing"
)

// testLogger sends the store's and Pebble's messages to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// quietLogger is a Pebble logger for databases tests open directly.
type quietLogger struct{ t testing.TB }

func (quietLogger) Infof(string, ...any) {}

func (l quietLogger) Errorf(format string, args ...any) { l.t.Logf(format, args...) }

func (l quietLogger) Fatalf(format string, args ...any) { l.t.Fatalf(format, args...) }
