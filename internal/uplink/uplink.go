// Package uplink is a site router's side of tiered routing (WAVEMQ's tiers): each
// [[route.uplink]] forwards the namespaces it names to a designated router and brings down what
// the site's sessions subscribe to there, over one MQTT 5 connection with client certificates.
//
// Up: the link's trunk is a persistent session of the core ($uplink/<name>) subscribed to <ns>/#
// in every namespace. It is sequenced: the core numbers what it takes, densely and durably, and
// queues it on disk under the trunk's limits while the link is down, with the same promise as any
// session queue. Its sink (sink.go) forwards deliveries as PUBLISH, in order, within the
// designated router's window; a PUBACK completes one. The numbers let the designated router drop
// what it already has after a reconnect or a restart (broker.PublishRouted), and count as gaps
// what the trunk's limits dropped.
//
// Down: the site subscribes upstream, in its one session there, to the union of its sessions'
// filters mapped into the namespaces (filters.go), and what comes down is published here by the
// trunk's own client, whose No Local subscriptions keep it from going back up (down.go).
//
// Queries of the namespaces go to the designated router while the link is up (query.go).
package uplink

import (
	"fmt"
	"log/slog"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/store"
)

// Manager runs a router's uplinks.
type Manager struct {
	links []*Link
}

// New prepares every uplink: its trunk session is connected, subscribed and left offline, so it
// takes what is published from now on; queries of its namespaces go to it. Call it before
// listeners accept clients, then Start.
func New(b *broker.Broker, rec store.Records, ups []config.Uplink, routerID string, maxPacket int, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{}
	for _, u := range ups {
		l, err := newLink(b, rec, Config{Uplink: u, RouterID: routerID, MaxPacketSize: maxPacket}, log)
		if err != nil {
			return nil, fmt.Errorf("uplink %s: %w", u.Name, err)
		}
		if err := l.prepare(); err != nil {
			return nil, err
		}
		for _, ns := range u.Namespaces {
			b.SetQuerier(ns, l)
		}
		m.links = append(m.links, l)
	}
	return m, nil
}

// Start connects the uplinks; each keeps reconnecting until Close.
func (m *Manager) Start() {
	for _, l := range m.links {
		l.start()
	}
}

// Close takes every uplink down; their trunks keep their queues for the next start.
func (m *Manager) Close() {
	for _, l := range m.links {
		l.close()
	}
}

// Stats describes every uplink.
func (m *Manager) Stats() []LinkStats {
	out := make([]LinkStats, 0, len(m.links))
	for _, l := range m.links {
		out = append(out, l.Stats())
	}
	return out
}
