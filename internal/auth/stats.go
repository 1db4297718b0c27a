package auth

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Stats counts authentication outcomes. The fields are atomics so metrics can read them at any
// time; the Authenticator only ever adds.
type Stats struct {
	Accepted         atomic.Uint64 // principals returned
	UnknownUser      atomic.Uint64 // refused: no such user, or a user without a password
	WrongPassword    atomic.Uint64 // refused: the password did not match
	BadToken         atomic.Uint64 // refused: unknown, revoked or malformed token, or its user is gone
	ExpiredToken     atomic.Uint64 // refused: the token has expired
	URLDenied        atomic.Uint64 // refused by the external URL
	Unavailable      atomic.Uint64 // refused: the external URL or the store could not answer
	Backoff          atomic.Uint64 // refused without checking: too many recent failures from the address
	AnonymousRefused atomic.Uint64 // refused: no credentials and anonymous access is off
	LegacyUpgraded   atomic.Uint64 // legacy SHA-256 (or outdated argon2) hashes re-hashed at login
	URLCacheHits     atomic.Uint64 // external decisions answered from the cache
	URLRequests      atomic.Uint64 // requests sent to the external URL
}

// cause names a refusal for counting and logging.
type cause uint8

const (
	causeUnknownUser cause = iota
	causeWrongPassword
	causeBadToken
	causeExpiredToken
	causeURLDenied
	causeUnavailable
	causeBackoff
	causeAnonymous
	causeBadGrant // not a refusal: an external answer carried a grant that was left out
	numCauses
)

var causeNames = [numCauses]string{
	"unknown user", "wrong password", "bad token", "expired token", "denied by auth URL",
	"auth unavailable", "back-off", "anonymous refused", "bad grant from auth URL",
}

func (s *Stats) counter(c cause) *atomic.Uint64 {
	switch c {
	case causeUnknownUser:
		return &s.UnknownUser
	case causeWrongPassword:
		return &s.WrongPassword
	case causeBadToken:
		return &s.BadToken
	case causeExpiredToken:
		return &s.ExpiredToken
	case causeURLDenied:
		return &s.URLDenied
	case causeUnavailable:
		return &s.Unavailable
	case causeBackoff:
		return &s.Backoff
	case causeAnonymous:
		return &s.AnonymousRefused
	}
	return nil
}

// rateLog logs each cause at most once per interval, so that a client hammering with bad
// credentials (or an auth URL that is down) cannot flood the log. The line carries how many
// events were left out since the previous one.
type rateLog struct {
	log        *slog.Logger
	interval   time.Duration
	now        func() time.Time
	last       [numCauses]atomic.Int64 // unix nanoseconds of the last line; 0: never
	suppressed [numCauses]atomic.Uint64
}

func (r *rateLog) event(c cause, msg string, attrs ...slog.Attr) {
	now := r.now().UnixNano()
	last := r.last[c].Load()
	if last != 0 && now-last < int64(r.interval) || !r.last[c].CompareAndSwap(last, now) {
		r.suppressed[c].Add(1)
		return
	}
	attrs = append(attrs, slog.String("cause", causeNames[c]),
		slog.Uint64("suppressed", r.suppressed[c].Swap(0)))
	r.log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}
