package server

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mailbox"
	"github.com/ternmq/tern/internal/message"
)

// newAuthenticator builds the authenticator over the users, groups and tokens kept in st.
func newAuthenticator(cfg config.Config, st auth.Store, log *slog.Logger, clk clock.Clock) (*auth.Authenticator, error) {
	c := cfg.Auth
	ac := auth.Config{
		AllowAnonymous: c.AllowAnonymous,
		SuperGroup:     c.SuperGroup,
		URL: auth.URLConfig{URL: c.URL, Style: c.URLStyle, Timeout: c.URLTimeout,
			CacheTTL: c.URLCacheTTL},
		Backoff:     auth.BackoffConfig{Failures: c.BackoffFailures, Max: c.BackoffMax},
		LogInterval: cfg.Limits.LogInterval,
		Argon2: auth.Argon2Params{Memory: uint32(c.PasswordHashMemoryKiB), Time: uint32(c.PasswordHashPasses),
			Threads: uint8(c.PasswordHashThreads)},
		MaxConcurrentHashes: c.MaxConcurrentHashes,
	}
	// OWASP's argon2id settings trade memory for passes, from 47104 KiB x 1 to 7168 KiB x 5;
	// below the cheapest of them a stolen store is easier to crack.
	if c.PasswordHashMemoryKiB*c.PasswordHashPasses < 7168*5 {
		log.Warn("password hashes cost less than OWASP's floor for argon2id (e.g. 19456 KiB x 2 passes): fine for tests, weak for stored passwords",
			"memory_kib", c.PasswordHashMemoryKiB, "passes", c.PasswordHashPasses)
	}
	if clk != nil {
		ac.Clock = clk.Now
	}
	var err error
	if ac.AnonymousGrants, err = config.ParseGrants(c.AnonymousGrants); err != nil {
		return nil, err
	}
	if ac.DefaultGrants, err = config.ParseGrants(c.DefaultGrants); err != nil {
		return nil, err
	}
	if ac.URL.BearerGrants, err = config.ParseGrants(c.URLBearerGrants); err != nil {
		return nil, err
	}
	return auth.New(ac, st, log)
}

// checkOpen refuses to expose an open tern (nothing configured: everybody may do everything)
// beyond loopback unless the configuration says so, and otherwise warns once.
func checkOpen(cfg config.Config, a *auth.Authenticator, log *slog.Logger) error {
	if !a.Open() {
		return nil
	}
	var exposed []string
	l := cfg.Listen
	for _, addr := range append(l.Network(), cfg.Route.Listen) {
		if addr != "" && !loopback(addr) {
			exposed = append(exposed, addr)
		}
	}
	if len(exposed) > 0 && !cfg.Auth.AllowOpen {
		return fmt.Errorf("no users, tokens or auth URL are configured, so every client could do everything, "+
			"and %s is not a loopback address: add a user first (tern user add NAME --data-dir %s), "+
			"or set auth.allow_open = true", strings.Join(exposed, ", "), cfg.DataDir)
	}
	log.Warn("authentication is off: no users, tokens or auth URL are configured, so every client may do everything; " +
		"add a user (tern user add) to turn it on")
	return nil
}

// loopback reports whether a listen address binds only the loopback interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// notifyMailbox publishes each message pushed to a mailbox on $mailbox/<owner>, so the owner can
// receive its mailbox over MQTT (or any face) as well as by polling it.
func (s *Server) notifyMailbox(owner string, m mailbox.Message) {
	msg := &message.Message{Topic: "$mailbox/" + owner, Payload: m.Body, QoS: 1}
	msg.Props.User = []message.UserProperty{{Key: "tern-mailbox-id", Value: strconv.FormatUint(m.ID, 10)},
		{Key: "tern-wants-reply", Value: strconv.FormatBool(m.WantsReply)}}
	if _, err := s.Broker.PublishAs(auth.Unrestricted(m.From), auth.Publish, msg); err != nil {
		s.log.Warn("mailbox notification not published", "mailbox", owner, "err", err)
	}
}
