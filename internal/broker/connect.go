package broker

import (
	"context"
	"log/slog"
	"strings"

	"github.com/ternmq/tern/internal/auth"
)

// Connect attaches a client to its session, creating, resuming or taking it over. The client
// gets no deliveries until the face calls Start on the returned Client, which lets the face send
// its connect acknowledgement first.
//
// The client is authenticated first (which may wait for a password hash or the external URL,
// bounded by ctx); the errors then wrap auth's (auth.ErrBadCredentials and the others) or are
// this package's refusals (ErrWillNotAuthorized, ErrClientIDInUse, ErrConnectionLimit).
func (b *Broker) Connect(ctx context.Context, req ConnectRequest) (*Client, ConnectResult, error) {
	res, p, err := b.admit(ctx, req)
	if err != nil {
		return nil, res, err
	}
	if err := b.claimCluster(ctx, req, res); err != nil {
		return nil, res, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, res, ErrServerShuttingDown
	}
	s := b.sessions[res.ClientID]
	if req.Exclusive && s != nil && s.hasSink() {
		b.mu.Unlock()
		return nil, res, ErrClientIDInUse
	}
	if err := b.claimLocked(s, p.Identity, res.ClientID); err != nil {
		b.mu.Unlock()
		return nil, res, err
	}
	var prev replaced
	if s != nil {
		s.mu.Lock()
		prev = b.replaceLocked(s, req, p)
		if req.CleanStart {
			s.mu.Unlock()
			s = nil
		} else {
			res.SessionPresent = true
			if err := s.keepLocked(res.Expiry); err != nil {
				s.mu.Unlock()
				b.mu.Unlock()
				return nil, res, err
			}
		}
	}
	if s == nil {
		if s, err = b.newSession(res.ClientID, res.Expiry > 0); err != nil {
			b.mu.Unlock()
			return nil, res, storageError(err)
		}
		b.sessions[res.ClientID] = s
		b.stats.Sessions.Add(1)
		s.mu.Lock()
	}
	c, err := b.attachSessionLocked(s, req, res, p)
	s.mu.Unlock()
	b.mu.Unlock()
	if err != nil {
		return nil, res, err
	}
	b.connected(req, res, p, prev)
	return c, res, nil
}

// admit checks what can be checked before any lock: the client id, the credentials, the will, and
// that a session meant to outlive its connection can be saved.
func (b *Broker) admit(ctx context.Context, req ConnectRequest) (ConnectResult, *auth.Principal, error) {
	res := ConnectResult{ClientID: req.ClientID, Expiry: req.Expiry}
	if res.ClientID == "" {
		res.ClientID = newClientID()
		res.AssignedID = true
	}
	if b.cfg.MaxSessionExpiry > 0 && res.Expiry > b.cfg.MaxSessionExpiry {
		res.Expiry = b.cfg.MaxSessionExpiry
	}
	p := req.Principal
	if p == nil {
		creds := req.Credentials
		creds.ClientID = res.ClientID
		var err error
		if p, err = b.authenticate(ctx, creds); err != nil {
			return res, nil, err
		}
	}
	res.Principal = p
	own := req.Principal != nil && req.Principal.Source == auth.SourceInternal
	peerID := p.Identity != "" && strings.HasPrefix(res.ClientID, PeerClientPrefix(p.Identity))
	if req.Peer && !peerID || strings.HasPrefix(res.ClientID, "$") && !own && !(req.Peer && peerID) {
		// Reserved for the broker's own sessions (webhooks, uplinks), which clients must not take
		// over; a peer router has its own corner, named by its identity.
		return res, p, ErrClientIDReserved
	}
	if !allowWill(p, req.Will) {
		b.stats.NotAuthorized.Add(1)
		return res, p, ErrWillNotAuthorized
	}
	if req.Will != nil {
		stampSender(req.Will.Msg, p.Identity)
		stampExpiry(req.Will.Msg, b.now())
	}
	// A session that is to outlive its connection must be saved: while the store refuses writes
	// (a failed or full disk), it is refused (MQTT: server unavailable) rather than accepted with
	// a record that is not kept.
	if res.Expiry > 0 {
		if err := b.store.Health(); err != nil {
			return res, p, b.storeFailed("saving a new session", err)
		}
	}
	return res, p, nil
}

// PeerClientPrefix is how the client ids of a peer router's sessions begin: "$route/" and the
// identity its certificate gives, so that no router can take over another's session.
func PeerClientPrefix(identity string) string { return "$route/" + identity + "/" }

// replaced is what a connect took from the connection it replaced, to be dealt with once the
// locks are released.
type replaced struct {
	sink Sink
	// takenOver is the identity of an announced connection this one took over (see events.go).
	takenOver *string
	wills     []*Will
	// orphaned are calls the replaced connection will not answer.
	orphaned []pendingCall
}

// replaceLocked detaches a session's current connection (a takeover) and, for a clean start,
// ends the session. The caller holds b.mu and s.mu.
func (b *Broker) replaceLocked(s *Session, req ConnectRequest, p *auth.Principal) (r replaced) {
	if s.sink != nil {
		// Takeover: the old connection's will goes out unless the session continues and the will
		// was delayed (the new connection arrived within the delay).
		r.sink = s.sink
		if s.announced {
			id := s.identity
			r.takenOver = &id
		}
		if w := s.willLocked(); w != nil && (w.Delay == 0 || req.CleanStart) {
			r.wills = append(r.wills, w)
		}
		s.detach()
		r.orphaned = s.takeCalls()
	}
	if w := s.pendingWillLocked(); w != nil {
		// A will waiting out its delay: a reconnect in time cancels it, unless the session ends.
		if req.CleanStart {
			r.wills = append(r.wills, w)
		}
		s.rare.pendingWill = nil
	}
	s.stopTimers()
	if req.CleanStart {
		b.discardLocked(s)
	} else {
		b.dropUnauthorizedLocked(s, p, req.Peer)
	}
	return r
}

// keepLocked readies a resumed session for its new expiry: one that is now to outlive its
// connection moves to the store. The caller holds s.mu.
func (s *Session) keepLocked(expiry uint32) error {
	if !s.durable() && expiry > 0 {
		if err := s.makeDurable(); err != nil {
			return storageError(err)
		}
	}
	return nil
}

// attachSessionLocked gives the session its new connection. The caller holds b.mu and s.mu.
func (b *Broker) attachSessionLocked(s *Session, req ConnectRequest, res ConnectResult, p *auth.Principal) (*Client, error) {
	if (req.Sequenced || req.Peer) && !s.marksLoadedLocked() {
		if err := s.loadMarks(); err != nil {
			return nil, err
		}
	}
	s.sequenced = s.sequenced || req.Sequenced
	s.gen++
	s.sink = req.Sink
	s.identity = p.Identity
	s.face = internFace(req.Face)
	s.announced = req.Announce
	rate := b.attachLocked(p.Identity)
	b.stats.Connected.Add(1)
	if !p.Expires.IsZero() {
		gen := s.gen
		s.extra().credTimer = b.clock.AfterFunc(p.Expires.Sub(b.clock.Now()), func() { b.credentialsDue(s, gen) })
	}
	s.expiry = res.Expiry
	if req.Will != nil {
		s.extra().will = req.Will
	} else if s.rare != nil {
		s.rare.will = nil
	}
	s.inflightMax = uint16(b.cfg.MaxInflight) // New keeps it within 16 bits
	if req.ReceiveMax > 0 && req.ReceiveMax < s.inflightMax {
		s.inflightMax = req.ReceiveMax
	}
	s.limitRule = b.limitRule(res.ClientID)
	s.disconnected = 0
	// The record now holds the will, so a crash while the client is connected still sends it.
	s.saveLocked()
	return &Client{s: s, gen: s.gen, principal: p, rate: rate,
		announce: req.Announce, batch: req.Batch, peer: req.Peer}, nil
}

// connected finishes a connect outside the locks: the replaced connection is closed, calls it
// owed fail, events are announced and wills published.
func (b *Broker) connected(req ConnectRequest, res ConnectResult, p *auth.Principal, prev replaced) {
	if prev.sink != nil {
		prev.sink.Close(ErrSessionTakenOver)
	}
	if prev.takenOver != nil {
		// The old connection's Disconnect finds the session gone to this one and says nothing.
		b.announce(EventsPrefix+"disconnected", func() map[string]any {
			return map[string]any{"client_id": res.ClientID, "identity": *prev.takenOver, "reason": "session_taken_over"}
		})
	}
	b.failCalls(prev.orphaned, "service disconnected")
	if b.log.Enabled(context.Background(), slog.LevelDebug) { // the arguments cost allocations
		b.log.Debug("client connected", "client", res.ClientID, "identity", p.Identity, "face", req.Face,
			"remote", req.RemoteAddr, "session_present", res.SessionPresent)
	}
	if req.Announce {
		b.announce(EventsPrefix+"connected", func() map[string]any {
			return map[string]any{"client_id": res.ClientID, "identity": p.Identity, "face": req.Face, "remote": req.RemoteAddr}
		})
	}
	for _, w := range prev.wills {
		b.publishWill(w)
	}
}

// hasSink reports whether the session has a connection.
func (s *Session) hasSink() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sink != nil
}
