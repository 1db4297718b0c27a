package server

import (
	"net/http"
	"net/http/pprof"
	"runtime"
)

// serveDebug starts the profiling listener of [debug] pprof, when set: net/http/pprof's
// handlers on an address of their own, so that a profile is never one URL away on the public
// HTTP face (its mux is the face's, and /debug/ is not routed there). Config validation keeps
// the address on loopback unless debug.pprof_allow_remote says otherwise.
//
// It shares serveHTTPHandler with the other HTTP listeners: the same ReadHeaderTimeout and
// ReadTimeout, and Close ends it like them. A running /debug/pprof/profile or /trace waits on
// its request's context, which Close cancels, so a 20-second profile does not hold the shutdown.
func (s *Server) serveDebug() error {
	d := s.cfg.Debug
	if d.Pprof == "" {
		return nil
	}
	// Process-wide rates: only a profiling tern pays for sampling blocking events and contended
	// locks, and Close turns them off again.
	if d.BlockRate > 0 {
		runtime.SetBlockProfileRate(d.BlockRate)
	}
	if d.MutexFraction > 0 {
		runtime.SetMutexProfileFraction(d.MutexFraction)
	}
	s.profileRates = d.BlockRate > 0 || d.MutexFraction > 0
	s.log.Warn("profiling endpoint on: profiles expose the server's memory", "addr", d.Pprof,
		"block_rate", d.BlockRate, "mutex_fraction", d.MutexFraction)
	return s.serveHTTPHandler("pprof", d.Pprof, nil, pprofMux())
}

// pprofMux routes net/http/pprof's handlers under /debug/pprof/ on a mux of its own (the
// package also registers them on http.DefaultServeMux, which tern never serves).
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // the index, and every named profile by name
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// stopProfileRates turns off the block and mutex profiling serveDebug turned on.
func (s *Server) stopProfileRates() {
	if s.profileRates {
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
	}
}
