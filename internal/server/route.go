package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/mqtt"
	"github.com/ternmq/tern/internal/uplink"
)

// Tiered routing: a site router's uplinks (internal/uplink) and a designated router's peer
// listener (the MQTT face's peer mode).

// startRoute prepares the uplinks' trunk sessions; it runs before any listener accepts a client,
// so that the trunks take everything published.
func (s *Server) startRoute() error {
	r := s.cfg.Route
	if len(r.Uplinks) == 0 && r.Listen == "" {
		return nil
	}
	id, err := uplink.RouterID(s.Store.Records(), r.ID)
	if err != nil {
		return err
	}
	s.RouterID = id
	if len(r.Uplinks) > 0 {
		if s.cfg.DataDir == "" {
			s.log.Warn("uplinks without a data directory: what waits to go up is lost at a restart")
		}
		if s.Uplinks, err = uplink.New(s.Broker, s.Store.Records(), r.Uplinks, id, s.cfg.MQTT.MaxPacketSize, s.log); err != nil {
			return err
		}
	}
	s.log.Info("tiered routing", "router_id", id, "uplinks", len(r.Uplinks), "designated", strings.Join(r.Designated, ","))
	return nil
}

// servePeers opens route.listen: MQTT 5 over TLS, client certificates required, for the sites
// this router is designated for.
func (s *Server) servePeers() error {
	addr := s.cfg.Route.Listen
	if addr == "" {
		return nil
	}
	t := s.cfg.TLS.ForListener("route")
	st, err := certs.NewServerTLS(certs.ServerTLSOptions{CertFile: t.CertFile, KeyFile: t.KeyFile,
		ClientCAFile: t.ClientCAFile, RequireClientCert: true, IdentitySAN: t.IdentitySAN})
	if err != nil {
		return fmt.Errorf("TLS for listener route: %w", err)
	}
	s.tls["route"] = st
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen route on %s: %w", addr, err)
	}
	ln = tls.NewListener(ln, st.Config())
	s.track("route", ln)
	pc := mqtt.PeerConfig{RouterID: s.RouterID, Namespaces: s.cfg.Route.Designated}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.MQTT.ServePeers(ln, st.Identity, pc)
	}()
	return nil
}
