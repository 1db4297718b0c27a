package config

import (
	"errors"
	"fmt"
	"time"
)

// Memory is the process's memory policy (internal/memtune).
type Memory struct {
	// Limit is a soft limit on the memory the Go runtime holds, in bytes: past it the collector
	// runs more often rather than letting the heap double (debug.SetMemoryLimit). 0: the
	// GOMEMLIMIT variable when set, else ContainerLimitRatio of the container's limit.
	Limit int64 `koanf:"limit"`
	// ContainerLimitRatio is the share of the container's (cgroup's) memory limit taken as the
	// soft limit when Limit is 0 and GOMEMLIMIT is unset; 0, or no container limit: none.
	ContainerLimitRatio float64 `koanf:"container_limit_ratio"`
	// ReleaseIdle gives the heap's free pages back to the operating system once the broker has
	// been quiet for IdleAfter (a broker of idle connections would otherwise keep about twice its
	// live heap resident).
	ReleaseIdle bool          `koanf:"release_idle"`
	IdleAfter   time.Duration `koanf:"idle_after"`
}

func (m Memory) validate() error {
	var errs []error
	if m.Limit < 0 {
		errs = append(errs, fmt.Errorf("memory.limit %d: a byte count, 0 for none", m.Limit))
	}
	if !(m.ContainerLimitRatio >= 0 && m.ContainerLimitRatio <= 1) { // NaN too
		errs = append(errs, fmt.Errorf("memory.container_limit_ratio %v: between 0 (off) and 1", m.ContainerLimitRatio))
	}
	if m.ReleaseIdle && m.IdleAfter < time.Second {
		errs = append(errs, fmt.Errorf("memory.idle_after %s: at least 1s (each release is a full collection)", m.IdleAfter))
	}
	return errors.Join(errs...)
}
