package certs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Reloader is anything that re-reads its files on request, keeping its previous state when that
// fails, as ServerTLS does.
type Reloader interface{ Reload() error }

// WatchSIGHUP reloads every reloader, in order, each time the process receives SIGHUP, and logs
// each outcome, until ctx ends. It returns at once: the signal is subscribed to before it
// returns, because SIGHUP's default action ends the process, and a watcher started in a goroutine
// would leave a moment in which a SIGHUP meant as "reload" kills the broker. Signals that arrive
// during a reload are coalesced into one more reload. Where there is no SIGHUP (Windows) it never
// fires.
func WatchSIGHUP(ctx context.Context, log *slog.Logger, reloaders ...Reloader) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				reloadAll(log, reloaders)
			}
		}
	}()
}

func reloadAll(log *slog.Logger, reloaders []Reloader) {
	for _, r := range reloaders {
		what := fmt.Sprintf("%T", r)
		if s, ok := r.(fmt.Stringer); ok {
			what = s.String()
		}
		if err := r.Reload(); err != nil {
			log.Error("SIGHUP: reload failed; the previous files stay in use", "what", what, "err", err)
			continue
		}
		// Described again after the reload, so the log shows what is now in use.
		if s, ok := r.(fmt.Stringer); ok {
			what = s.String()
		}
		log.Info("SIGHUP: reloaded", "what", what)
	}
}
