package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/topic"
)

// conn is one MQTT network connection. Its reader goroutine runs serve; deliveries arrive through
// the broker.Sink methods in outbound.go from any goroutine.
type conn struct {
	srv *Server
	rd  packetReader
	// watch parks the connection in the poller while it is idle (TCP and Unix sockets on
	// Linux; nil otherwise).
	watch  *netio.Watch
	client *broker.Client
	// rare holds what few connections use, allocated on first use (see connRare).
	rare *connRare
	// out is the outgoing side and the end of the connection; out.NetConn() is the connection.
	out netio.Conn
	// batch collects the writes this connection's packets cause for other connections (and its
	// own acknowledgements); the reader flushes it before it reads more or waits.
	batch broker.Batch

	// maxOutPacket is the client's Maximum Packet Size (0: no limit).
	maxOutPacket uint32
	// sessionExpiry as agreed at connect; a DISCONNECT may not raise it from zero.
	sessionExpiry uint32
	// pendingAcks counts acknowledgements waiting for the store.
	pendingAcks atomic.Int32
	// keepAlive is in seconds, as agreed at connect (0: none).
	keepAlive   uint16
	version     packet.Version
	problemInfo bool
	// graceful is set when the client sent DISCONNECT (why the server ended it: connRare.why).
	graceful    bool
	publishWill bool
	// quickWakes counts a detached connection's wakes in a row soon after its last packet (Ready).
	quickWakes uint8
	// isPeer: another router is on the other end (rare.peer); aliasing: the server assigns topic
	// aliases toward the client (rare.aliases). Both are set, with rare, before the connection
	// has a session, and never change: deliveries, on other goroutines, read rare only when one
	// is set, so the reader may allocate rare later without a race.
	isPeer, aliasing bool
}

// connRare is the part of a connection most never use, out of line so that an idle connection
// does not carry it: an idle connection's bytes are what a broker holding many of them pays.
// The reader allocates it on first use (extra); a peer connection, and one with topic aliases,
// has it from the start, because its deliveries, on other goroutines, use it (peer,
// peerScratch, aliases).
type connRare struct {
	// peer is set on a peer listener's connections: another router (peer.go).
	peer *peerMode
	// aliases maps topics to the aliases this server assigned toward the client (MQTT 5); it is
	// guarded by out's lock, since aliases are assigned in wire order.
	aliases *aliasTable
	// lastTicket is the store sync the newest deferred acknowledgement waits for; later
	// acknowledgements queue behind it so they leave in the order the publishes came. The
	// reader's alone.
	lastTicket *broker.Ticket
	// inAliases maps client-to-server topic aliases to topics (index = alias).
	inAliases []string
	// stallTimer bounds backpressure waits (see stall).
	stallTimer *time.Timer
	// peerScratch holds the digits of outgoing sequence numbers to a peer, under out's lock.
	peerScratch []byte
	// why says why the server ended the connection, for the session's log (set by fail).
	why string
}

// nc is the connection.
func (c *conn) nc() net.Conn { return c.out.NetConn() }

// clientID is the session's client id ("" before CONNECT is handled).
func (c *conn) clientID() string {
	if c.client == nil {
		return ""
	}
	return c.client.ClientID()
}

// keepAliveDur is the keep alive as a duration (0: none).
func (c *conn) keepAliveDur() time.Duration { return time.Duration(c.keepAlive) * time.Second }

// extra returns the connection's rare part, allocating it; only the reader calls it.
func (c *conn) extra() *connRare {
	if c.rare == nil {
		c.rare = new(connRare)
	}
	return c.rare
}

// peer is what a peer connection needs of its listener; nil on a client's connection.
func (c *conn) peer() *peerMode {
	if !c.isPeer {
		return nil
	}
	return c.rare.peer
}

// aliases is the table of topic aliases toward the client; nil when it takes none.
func (c *conn) aliases() *aliasTable {
	if !c.aliasing {
		return nil
	}
	return c.rare.aliases
}

// lastTicket is the store sync the newest deferred acknowledgement waits for (nil: none).
func (c *conn) lastTicket() *broker.Ticket {
	if c.rare == nil {
		return nil
	}
	return c.rare.lastTicket
}

// protocolError ends the connection with an MQTT reason code.
type protocolError struct {
	code   packet.ReasonCode
	reason string
}

func (e *protocolError) Error() string { return e.reason }

func protoErr(code packet.ReasonCode, reason string) error {
	return &protocolError{code: code, reason: reason}
}

// serve runs the connection: CONNECT, then the packet loop.
//
// cs is the TLS state of a WebSocket connection's HTTPS request (nil otherwise; a TLS listener's
// connection is a *tls.Conn itself) and identify reads the client certificate's identity (nil:
// not a TLS listener); only CONNECT needs them, so the connection does not keep them.
func (c *conn) serve(cs *tls.ConnectionState, identify netio.Identify) {
	if err := c.handshake(cs, identify); err != nil {
		c.logConnectFailed(err)
		c.finish()
		return
	}
	c.loop(false)
}

// handoffAfter is how long a goroutine that has handled packets waits for more before the
// connection parks (see loop).
const handoffAfter = time.Second

// loop reads and handles packets until the connection ends or parks.
//
// When a TCP or Unix socket has been quiet for handoffAfter, or has drained while maxLazyWaiters
// other connections are already waiting that way, the connection parks in the netio.Poller and
// loop returns: an idle connection holds no goroutine, and the poller hands it to a worker (Ready)
// once bytes arrive, its keep alive runs out or it is ending. A busy connection keeps its
// goroutine for that second: handing it over at every drain would cost a wake-up on every round
// trip. fresh is true on a goroutine that has not handled a packet yet: woken by the poller, it
// reads what is there without waiting and parks again when there is nothing. Without a poller
// (not Linux) the wait is handed to a fresh goroutine instead, which starts with a minimal stack
// and waits out the keep alive. TLS and WebSocket connections always wait, so for them loop
// returns only when the connection ends.
//
// Keep alive counts whole packets: the deadline is 1.5 times the keep alive after the read that
// completed the last packet, and bytes of a packet that never completes do not move it.
func (c *conn) loop(fresh bool) {
	for {
		// A detached connection's socket takes only reads that do not wait (see Ready).
		detached := c.rd.detached()
		wait, lazy := readDeadline(monoTime(c.rd.lastPacket), monoTime(c.rd.readAt), c.keepAliveDur(), !fresh && !detached && c.rd.parkable())
		mode := readWait
		switch {
		case lazy:
			mode = readLazy
		case (fresh || detached) && c.watch != nil:
			mode = readNoWait
		}
		typ, flags, body, err := c.rd.next(wait, mode, &c.batch)
		if err == errWouldBlock || lazy && errors.Is(err, os.ErrDeadlineExceeded) && !c.rd.stop.Load() {
			if c.park() {
				return
			}
			fresh = true
			continue
		}
		fresh = false
		if err == nil && typ == packet.PUBLISH && c.rd.tookWake() {
			// This PUBLISH arrived while the reader was parked. Other connections' readers may
			// have been made ready by the same poll, for bytes that reached the server first,
			// and the runtime runs the last-readied goroutine first (its netpoll list is LIFO),
			// queueing the others. Yielding once lets them go before this message is routed,
			// so a client's SUBSCRIBE is in place for a PUBLISH another client sent after it,
			// as with a broker that reads its sockets in readiness order. Only a PUBLISH yields
			// (were every packet to yield, the two readers would just swap places again), and
			// only the first after a wait, so a busy publisher pays nothing.
			runtime.Gosched()
		}
		if err == nil {
			c.srv.stats.PacketsIn.Add(1)
			err = c.handle(typ, flags, body)
		}
		if err != nil {
			c.fail(err)
		}
		if err != nil || c.graceful {
			c.finish()
			return
		}
	}
}

// park hands the connection's wait to the poller, with its keep-alive deadline, and reports
// whether it did: then the caller's goroutine must return without touching the connection.
// Without a poller a fresh goroutine takes the wait over. It reports false when the socket could
// not be parked (it is closing): the caller reads on and meets the end.
func (c *conn) park() bool {
	// The batch is empty here, its list back in the pool: the read that found nothing flushed
	// it (the park test checks that it holds nothing).
	c.rd.parked()
	if h := c.srv.parkHook.Load(); h != nil {
		(*h)(c)
	}
	if c.watch == nil {
		go c.loop(true)
		return true
	}
	deadline, _ := readDeadline(monoTime(c.rd.lastPacket), monoTime(c.rd.readAt), c.keepAliveDur(), false)
	if wake := c.detachIdle(); !wake.IsZero() && (deadline.IsZero() || wake.Before(deadline)) {
		deadline = wake
	}
	return c.watch.Arm(deadline) == nil
}

// detachIdle detaches a parking connection that has been quiet for Config.DetachIdle (see
// netio.Conn.Detach), and returns when to look again (zero: no need) for one that is attached.
// A connection that cannot detach now (bytes are being written to it) looks again after another
// DetachIdle.
//
// A detached reader detaches again at every park: a writer that had to wait may have attached
// the connection meanwhile (netio.Conn.Attach).
func (c *conn) detachIdle() time.Time {
	after := c.srv.cfg.DetachIdle
	if after <= 0 || c.isPeer {
		return time.Time{}
	}
	if c.rd.raw == nil {
		return c.detachIdleSocket(after)
	}
	now := monoNow()
	if due := c.rd.readAt + int64(after); now < due && !c.rd.detached() {
		return monoTime(due)
	}
	if raw := c.out.Detach(c.watch); raw != nil {
		c.rd.detach(raw)
		return time.Time{}
	}
	if c.rd.detached() {
		return time.Time{} // being written to: the next park looks again
	}
	return monoTime(now + int64(after))
}

// detachIdleSocket is detachIdle for a TLS or WebSocket connection: the layer above the socket
// stays, the socket under it lets go of its net.Conn (netio.ParkConn.Detach).
func (c *conn) detachIdleSocket(after time.Duration) time.Time {
	p := c.rd.parkConn()
	if p == nil || c.watch == nil {
		return time.Time{}
	}
	now := monoNow()
	if due := c.rd.readAt + int64(after); now < due && !c.rd.socketDetached {
		return monoTime(due)
	}
	detached := p.Detach(c.watch)
	c.countSocket(detached)
	if detached {
		return time.Time{}
	}
	return monoTime(now + int64(after))
}

// countSocket keeps Stats.Detached and Stats.Attaches in step for the socket under a TLS or
// WebSocket connection, as netio.Conn does for a plain one: the reader, which alone detaches
// and attaches it (a writer's attach leaves it detached), calls it with the socket's state
// after it may have changed; the connection's end takes it out of the count (finish).
func (c *conn) countSocket(detached bool) {
	if detached == c.rd.socketDetached {
		return
	}
	c.rd.socketDetached = detached
	if detached {
		c.srv.stats.Detached.Add(1)
		return
	}
	c.srv.stats.Detached.Add(-1)
	c.srv.stats.Attaches.Add(1)
}

// attach gives a detached connection's reader a net.Conn again, for reads that wait: the
// connection's own, or the one of the socket under its TLS or WebSocket layer.
func (c *conn) attach() error {
	if !c.rd.detached() {
		if err := c.rd.parkConn().Attach(); err != nil {
			return err
		}
		c.countSocket(false)
		return nil
	}
	nc, err := c.out.Attach(c.watch)
	if err != nil {
		return err
	}
	return c.rd.attach(nc)
}

// Ready implements netio.Handler: the parked connection is readable, its deadline passed, or it
// is ending; a worker of the poller runs it until it parks again.
//
// A detached connection (see detachIdle) reads what woke it without waiting and parks again, so
// a keep-alive ping or the acknowledgement of a delivery leaves it detached. Woken busyWakes
// times in a row within handoffAfter of its last whole packet, it is busy: it attaches, to wait
// for its next bytes the way a busy connection does (see loop), which a detached socket cannot.
// (Whole packets, so that a packet arriving in two segments does not count; several wakes, so
// that a new client's first packets after CONNECT, a SUBSCRIBE say, do not attach it.)
func (c *conn) Ready() {
	c.rd.woke = true
	if c.client == nil {
		// Logging in may wait for a password hash or the external authorization URL: on a
		// goroutine of its own, as for a connection accepted with its net.Conn, not on one of
		// the poller's bounded workers, which every parked connection shares.
		go c.login()
		return
	}
	if !c.rd.detached() && !c.rd.socketDetached {
		c.loop(true)
		return
	}
	if monoNow()-c.rd.lastPacket >= int64(handoffAfter) {
		c.quickWakes = 0
	} else if c.quickWakes++; c.quickWakes >= busyWakes {
		c.quickWakes = 0
		if err := c.attach(); err != nil {
			c.logDebug("attach", err)
			c.finish()
			return
		}
	}
	c.loop(true)
}

// ParkedCount implements netio.ParkCounter: a parked connection counts in Stats.Parked.
func (c *conn) ParkedCount() *atomic.Int64 { return &c.srv.stats.Parked }

// busyWakes is how many quick wakes in a row make a detached connection attach (see Ready).
const busyWakes = 4

// login reads CONNECT for a connection accepted as a bare socket (Server.serveBare), as far as it
// has arrived, and parks until more comes or the connect timeout passes; once logged in it goes
// on as any connection woken by the poller.
func (c *conn) login() {
	err := c.handshake(nil, nil)
	if err == errWouldBlock {
		if c.watch.Arm(c.connectDeadline()) == nil {
			return
		}
		err = net.ErrClosed
	}
	if err != nil {
		c.logConnectFailed(err)
		c.finish()
		return
	}
	c.loop(true)
}

// connectDeadline is when CONNECT must be whole: the connect timeout after the accept (the
// reader's last packet time until the first packet completes).
func (c *conn) connectDeadline() time.Time {
	return monoTime(c.rd.lastPacket).Add(c.srv.cfg.ConnectTimeout)
}

// readDeadline is when the reader's next wait ends. The keep-alive deadline is 1.5 times the keep
// alive after the read that completed the last packet (zero keep alive: none); a goroutine that
// may hand its wait over (canLazy) waits instead until handoffAfter past the last bytes, when that
// comes first, and lazy says so. A fresh goroutine's wait ends at the same keep-alive deadline, so
// a hand-off never restarts the keep alive.
func readDeadline(lastPacket, readAt time.Time, keepAlive time.Duration, canLazy bool) (deadline time.Time, lazy bool) {
	if keepAlive > 0 {
		deadline = lastPacket.Add(keepAlive + keepAlive/2)
	}
	if canLazy {
		if h := readAt.Add(handoffAfter); deadline.IsZero() || h.Before(deadline) {
			return h, true
		}
	}
	return deadline, false
}

// fail ends the connection after an error, telling an MQTT 5 client why when the error has a
// reason code.
func (c *conn) fail(err error) {
	var pe *protocolError
	var de *packet.Error
	switch {
	case errors.As(err, &pe):
		c.srv.stats.ProtocolErrors.Add(1)
		c.extra().why = pe.reason
		c.disconnect(pe.code, pe.reason)
	case errors.As(err, &de):
		c.srv.stats.ProtocolErrors.Add(1)
		c.extra().why = de.Reason
		c.disconnect(de.Code, de.Reason)
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.extra().why = "keep alive timeout"
		c.disconnect(packet.KeepAliveTimeout, "keep alive timeout")
	default:
		// The connection broke or the client closed it: finish cleans up.
		return
	}
	c.logDebug("closing connection", err)
}

// logDebug logs msg about the connection at debug level. The level is checked first: naming the
// client's address may take a system call, and the arguments cost allocations on every close.
func (c *conn) logDebug(msg string, err error) {
	if c.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		c.srv.log.Debug(msg, "client", c.clientID(), "remote", c.RemoteAddr(), "err", err)
	}
}

// logConnectFailed logs why the connection failed before it had a session, at debug level: port
// scanners and health checks are not worth a warning each. The level is checked first, as in
// logDebug.
func (c *conn) logConnectFailed(err error) {
	if c.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		c.srv.log.Debug("connection failed", "stage", "connect", "remote", c.RemoteAddr(), "err", err)
	}
}

// RemoteAddr names the client's end of the connection for logs, also while it is detached
// (broker.RemoteNamer).
func (c *conn) RemoteAddr() string { return c.out.RemoteAddr() }

// finish detaches from the session once the reader stops.
func (c *conn) finish() {
	c.batch.Flush()
	c.rd.close()
	if c.watch != nil {
		c.watch.Close()
	}
	if c.client != nil {
		why := ""
		if c.rare != nil {
			why = c.rare.why
		}
		c.client.Disconnect(broker.DisconnectRequest{
			Graceful:    c.graceful,
			PublishWill: c.publishWill,
			SetExpiry:   c.version == packet.V5,
			Expiry:      c.sessionExpiry,
			Reason:      why,
		})
	}
	c.out.Finish()
	if c.rd.socketDetached {
		c.rd.socketDetached = false
		c.srv.stats.Detached.Add(-1)
	}
	c.srv.connClosed(c)
}

// StopReading implements netio.Events: the connection is ending, so the reader stops waiting,
// in Go's netpoller or parked in the poller. netio calls it with the connection's lock held, so
// the connection cannot be detached or attached meanwhile.
func (c *conn) StopReading() {
	c.rd.stop.Store(true)
	if nc := c.nc(); nc != nil {
		netio.WakeReader(nc)
	}
	if c.watch != nil {
		c.watch.Wake()
	}
}

// Room implements netio.Events: a queue that refused a QoS 0 message has drained.
func (c *conn) Room() {
	if c.client != nil {
		c.client.Drained()
	}
}

// handshake reads CONNECT, opens the session and answers CONNACK.
func (c *conn) handshake(cs *tls.ConnectionState, identify netio.Identify) error {
	// The whole CONNECT must arrive within the connect timeout of the accept, however it trickles.
	// A connection accepted bare reads what is there and returns errWouldBlock (see login).
	deadline := c.connectDeadline()
	mode := readWait
	if c.rd.detached() {
		mode = readNoWait
	}
	typ, flags, body, err := c.rd.next(deadline, mode, &c.batch)
	if err == errWouldBlock {
		return err
	}
	if err != nil {
		if errors.Is(err, errConnectMemory) {
			c.srv.stats.ConnectMemoryFull.Add(1)
		}
		var de *packet.Error
		if errors.As(err, &de) && de.Code == packet.PacketTooLarge && typ == packet.CONNECT {
			c.srv.stats.ConnectTooLarge.Add(1)
			if c.rd.detached() && c.attach() != nil {
				return err
			}
			if c.rd.connectVersion(deadline) == packet.V5 {
				c.setVersion(packet.V5, true)
				c.refuse(packet.PacketTooLarge, fmt.Sprintf("CONNECT larger than %d bytes", c.srv.cfg.MaxConnectSize))
			}
		}
		return err
	}
	if typ != packet.CONNECT {
		return errors.New("first packet is not CONNECT")
	}
	var p packet.Connect
	if err := p.Decode(flags, body, 0); err != nil {
		var de *packet.Error
		if errors.As(err, &de) && p.Version == packet.V5 {
			c.setVersion(packet.V5, true)
			c.refuse(de.Code, de.Reason)
		} else if errors.As(err, &de) && de.Code == packet.UnsupportedProtocolVersion {
			// The client speaks a level we do not: answer in the 3.1.1 form every level understands.
			c.setVersion(packet.V311, true)
			c.refuse(packet.UnsupportedProtocolVersion, de.Reason)
		}
		return err
	}
	c.setVersion(p.Version, !p.Props.Has(packet.PropRequestProblemInfo) || p.Props.RequestProblemInfo == 1)

	req, code, reason := c.connectRequest(&p, cs, identify)
	if code != packet.Success {
		c.refuse(code, reason)
		return errors.New(reason)
	}
	// Authentication may wait for a password hash or the external URL; the connect timeout
	// bounds that as it bounds the wait for CONNECT.
	ctx := newConnectContext(time.Now().Add(c.srv.cfg.ConnectTimeout))
	client, res, err := c.srv.broker.Connect(ctx, req)
	ctx.cancel()
	if err != nil {
		code := connectCode(err)
		if code == packet.ServerUnavailable || code == packet.UnspecifiedError {
			c.srv.log.Warn("connect refused", "client", req.ClientID, "remote", req.RemoteAddr, "err", err)
		}
		c.refuse(code, err.Error())
		return err
	}
	c.client = client
	c.rd.loggedIn(c.srv.cfg.MaxPacketSize)
	c.sessionExpiry = res.Expiry
	// Through the connection's batch, which the reader flushes before its next read: written
	// by this goroutine, not by a writer started for it.
	var ack packet.Connack
	c.connack(&ack, &p, res)
	c.writeConnack(&ack, &c.batch)
	client.Start()
	return nil
}

// setVersion records the protocol level and whether the client wants reason strings. They are
// written under the outgoing side's lock because a shutdown may encode a DISCONNECT from another
// goroutine while CONNECT is being handled; after the handshake they never change.
func (c *conn) setVersion(v packet.Version, problemInfo bool) {
	c.out.Lock()
	c.version, c.problemInfo = v, problemInfo
	c.out.Unlock()
}

// connectRequest validates CONNECT and turns it into the core's request.
func (c *conn) connectRequest(p *packet.Connect, cs *tls.ConnectionState, identify netio.Identify) (broker.ConnectRequest, packet.ReasonCode, string) {
	cfg := &c.srv.cfg
	bcfg := c.srv.broker.Config()
	remote := c.out.RemoteAddr()
	req := broker.ConnectRequest{
		ClientID:   string(p.ClientID),
		CleanStart: p.CleanStart,
		Sink:       c,
		Announce:   true,
		Batch:      &c.batch,
		Face:       "mqtt",
		RemoteAddr: remote,
		Credentials: auth.Credentials{
			Face:       "mqtt",
			Username:   string(p.Username),
			Password:   p.Password, // the core keeps nothing of it
			RemoteAddr: remote,
		},
	}
	// The TLS handshake finished before CONNECT could be read.
	req.Credentials.CertIdentity = netio.CertIdentity(c.nc(), cs, identify)
	if c.isPeer {
		if code, reason := c.peerConnect(p, &req); code != packet.Success {
			return req, code, reason
		}
	}
	if req.ClientID == "" && c.version != packet.V5 && (!p.CleanStart || c.version == packet.V31) {
		return req, packet.ClientIDNotValid, "an empty client identifier needs a clean session"
	}
	if len(req.ClientID) > cfg.MaxClientIDLength {
		return req, packet.ClientIDNotValid, "client identifier too long"
	}
	c.keepAlive = p.KeepAlive
	if c.version == packet.V5 {
		if p.Props.Has(packet.PropAuthMethod) {
			return req, packet.BadAuthenticationMethod, "enhanced authentication is not supported"
		}
		req.Expiry = p.Props.SessionExpiry
		req.ReceiveMax = 65535
		if p.Props.Has(packet.PropReceiveMax) {
			req.ReceiveMax = p.Props.ReceiveMax
		}
		c.maxOutPacket = p.Props.MaxPacketSize
		if p.Props.TopicAliasMax > 0 {
			if m := min(p.Props.TopicAliasMax, cfg.MaxOutboundAliases); m > 0 {
				c.extra().aliases = &aliasTable{max: m, byName: map[string]uint16{}}
				c.aliasing = true
			}
		}
		if ka := c.serverKeepAlive(p.KeepAlive); ka != p.KeepAlive {
			c.keepAlive = ka
		}
	} else if !p.CleanStart {
		req.Expiry = broker.NeverExpire
	}
	if p.Will {
		w, code, reason := c.will(p, &bcfg)
		if code != packet.Success {
			return req, code, reason
		}
		req.Will = w
	}
	return req, packet.Success, ""
}

// connectCode maps why the core refused a connect to a CONNACK reason (3.1.1 clients get its
// nearest 3.1.1 code).
func connectCode(err error) packet.ReasonCode {
	switch {
	case errors.Is(err, auth.ErrBadCredentials):
		return packet.BadUsernameOrPassword
	case errors.Is(err, auth.ErrNotAuthorized), errors.Is(err, broker.ErrNotAuthorized):
		return packet.NotAuthorized
	case errors.Is(err, auth.ErrBackoff):
		return packet.ConnectionRateExceeded
	case errors.Is(err, broker.ErrClientIDInUse), errors.Is(err, broker.ErrClientIDReserved):
		return packet.ClientIDNotValid
	case errors.Is(err, broker.ErrQuotaExceeded):
		return packet.QuotaExceeded
	case errors.Is(err, auth.ErrUnavailable), errors.Is(err, broker.ErrServerShuttingDown),
		errors.Is(err, broker.ErrStorage):
		return packet.ServerUnavailable
	default:
		return packet.UnspecifiedError
	}
}

// serverKeepAlive applies the configured bounds to the client's keep alive (MQTT 5 lets the
// server tell the client the value it must use).
func (c *conn) serverKeepAlive(ka uint16) uint16 {
	max := c.srv.cfg.MaxKeepAlive
	if max > 0 && (ka == 0 || ka > max) {
		return max
	}
	return ka
}

func (c *conn) will(p *packet.Connect, bcfg *broker.Config) (*broker.Will, packet.ReasonCode, string) {
	if err := topic.ValidName(string(p.WillTopic)); err != nil {
		return nil, packet.TopicNameInvalid, "will topic: " + err.Error()
	}
	if p.WillQoS > bcfg.MaxQoS {
		return nil, packet.QoSNotSupported, "will QoS above the server maximum"
	}
	if p.WillRetain && !bcfg.RetainAvailable {
		return nil, packet.RetainNotSupported, "retained wills are not available"
	}
	m := &message.Message{
		Topic:   string(p.WillTopic),
		Payload: append([]byte(nil), p.WillPayload...),
		QoS:     p.WillQoS,
		Retain:  p.WillRetain,
	}
	w := &broker.Will{Msg: m}
	if c.version == packet.V5 {
		var users []message.UserProperty
		if err := borrowMessageProps(&p.WillProps, m, &users); err != nil {
			return nil, packet.ProtocolError, err.Error()
		}
		// An owned copy: the will outlives the CONNECT buffer.
		w.Msg = m.Clone()
		w.Delay = p.WillProps.WillDelay
	}
	return w, packet.Success, ""
}

// connack builds the acknowledgement in ack, announcing in MQTT 5 every limit that differs from
// the protocol default.
func (c *conn) connack(ack *packet.Connack, p *packet.Connect, res broker.ConnectResult) {
	*ack = packet.Connack{SessionPresent: res.SessionPresent, Reason: packet.Success}
	if c.version != packet.V5 {
		return
	}
	cfg := &c.srv.cfg
	bcfg := c.srv.broker.Config()
	pr := &ack.Props
	if res.AssignedID {
		pr.AssignedClientID = []byte(res.ClientID)
		pr.Set(packet.PropAssignedClientID)
	}
	if res.Expiry != p.Props.SessionExpiry {
		pr.SessionExpiry = res.Expiry
		pr.Set(packet.PropSessionExpiry)
	}
	if cfg.ReceiveMax != 65535 {
		pr.ReceiveMax = cfg.ReceiveMax
		pr.Set(packet.PropReceiveMax)
	}
	if bcfg.MaxQoS < 2 || c.isPeer {
		// A link carries QoS 2 as QoS 1 (peer.go).
		pr.MaxQoS = min(bcfg.MaxQoS, 1)
		pr.Set(packet.PropMaxQoS)
	}
	if !bcfg.RetainAvailable {
		pr.RetainAvailable = 0
		pr.Set(packet.PropRetainAvailable)
	}
	pr.MaxPacketSize = uint32(cfg.MaxPacketSize)
	pr.Set(packet.PropMaxPacketSize)
	if cfg.MaxInboundAliases > 0 {
		pr.TopicAliasMax = cfg.MaxInboundAliases
		pr.Set(packet.PropTopicAliasMax)
	}
	if ka := c.serverKeepAlive(p.KeepAlive); ka != p.KeepAlive {
		pr.ServerKeepAlive = ka
		pr.Set(packet.PropServerKeepAlive)
	}
	if p.Props.RequestResponseInfo == 1 {
		// A prefix under which this client may receive responses.
		pr.ResponseInfo = []byte(broker.ResponsePrefix(res.ClientID))
		pr.Set(packet.PropResponseInfo)
	}
}

// refuse answers a failed CONNECT and closes the connection.
func (c *conn) refuse(code packet.ReasonCode, reason string) {
	c.srv.stats.ConnectRefused.Add(1)
	ack := packet.Connack{Reason: code}
	if c.version != packet.V5 {
		ack.Reason = packet.V3ConnackCode(code)
	} else if reason != "" {
		ack.Props.ReasonString = []byte(reason)
		ack.Props.Set(packet.PropReasonString)
	}
	c.writeConnack(&ack, nil)
	c.out.End(errors.New(reason))
}
