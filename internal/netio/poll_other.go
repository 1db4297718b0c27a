//go:build !linux

package netio

import (
	"errors"
	"syscall"
	"time"
)

// Poller is Linux's epoll; elsewhere there is none, and faces wait for each connection on a
// goroutine of its own.
type Poller struct{}

// Handler is what a parked socket does when it is readable (see the Linux Poller).
type Handler interface{ Ready() }

// Watch is one socket's registration (see the Linux Poller).
type Watch struct{}

var errNoPoller = errors.New("netio: no poller on this system")

// DefaultPoller reports that there is no poller here.
func DefaultPoller() (*Poller, error) { return nil, errNoPoller }

// Watch fails: there is no poller.
func (p *Poller) Watch(syscall.RawConn, Handler) (*Watch, error) { return nil, errNoPoller }

// Arm fails: there is no poller.
func (w *Watch) Arm(time.Time) error { return errNoPoller }

// Parked is false: nothing parks.
func (w *Watch) Parked() bool { return false }

// Wake does nothing.
func (w *Watch) Wake() {}

// Close does nothing.
func (w *Watch) Close() {}
