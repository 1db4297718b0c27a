package config

import (
	"errors"
	"fmt"
	"net"
)

// Debug configures the profiling endpoint: net/http/pprof's handlers on a listener of their own,
// off unless Pprof is set.
type Debug struct {
	// Pprof is the address of the profiling listener (/debug/pprof/...); empty: off. It is never
	// served on the HTTP face's listeners.
	Pprof string `koanf:"pprof"`
	// PprofAllowRemote lets Pprof bind beyond loopback. Profiles expose memory contents (a heap
	// profile names what holds the memory, a goroutine dump shows arguments), so off by default.
	PprofAllowRemote bool `koanf:"pprof_allow_remote"`
	// BlockRate and MutexFraction are runtime.SetBlockProfileRate's nanoseconds and
	// runtime.SetMutexProfileFraction's 1/n, applied when the profiling listener starts; 0: those
	// profiles stay empty (they cost time on every blocking event or contended lock).
	BlockRate     int `koanf:"block_rate"`
	MutexFraction int `koanf:"mutex_fraction"`
}

func (d Debug) validate() error {
	var errs []error
	if d.Pprof != "" {
		host, _, err := net.SplitHostPort(d.Pprof)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("debug.pprof %q: %v", d.Pprof, err))
		case !d.PprofAllowRemote && !loopbackHost(host):
			errs = append(errs, fmt.Errorf("debug.pprof %s is not a loopback address: profiles expose the server's memory; "+
				"listen on 127.0.0.1 (and reach it through an SSH tunnel), or set debug.pprof_allow_remote = true", d.Pprof))
		}
	}
	if d.BlockRate < 0 || d.MutexFraction < 0 {
		errs = append(errs, errors.New("debug.block_rate and debug.mutex_fraction cannot be negative"))
	}
	return errors.Join(errs...)
}
