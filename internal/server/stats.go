package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/cluster"
	"github.com/ternmq/tern/internal/uplink"
)

// Stats is the JSON body of GET /v1/stats, which `tern stats` prints.
type Stats struct {
	Sessions         int64                `json:"sessions"`
	Connected        int64                `json:"connected"`
	Subscriptions    int64                `json:"subscriptions"`
	Retained         int64                `json:"retained"`
	Queued           int64                `json:"queued"`
	Received         uint64               `json:"received"`
	Delivered        uint64               `json:"delivered"`
	DroppedQueueFull uint64               `json:"dropped_queue_full"`
	RefusedQueueFull uint64               `json:"refused_queue_full"`
	DroppedSlow      uint64               `json:"dropped_slow"`
	DroppedOffline   uint64               `json:"dropped_offline"`
	Expired          uint64               `json:"expired"`
	StoreErrors      uint64               `json:"store_errors"`
	Access           AccessStats          `json:"access"`
	Store            StoreStats           `json:"store"`
	TopSessions      []broker.SessionInfo `json:"top_sessions"`
	// Cluster is the node's view of its cluster (GET /v1/cluster); absent when not clustered.
	Cluster *cluster.Status `json:"cluster,omitempty"`
	// Route is tiered routing: this router's id, its uplinks, and the sites it is designated
	// for (absent when it does not route).
	Route *RouteStats `json:"route,omitempty"`
}

// RouteStats describes tiered routing.
type RouteStats struct {
	RouterID   string             `json:"router_id"`
	Designated []string           `json:"designated,omitempty"`
	Uplinks    []uplink.LinkStats `json:"uplinks,omitempty"`
	// Peers are the sites' sessions here ($route/...): Taken is the last number taken from each,
	// RoutedDuplicates and RoutedGaps what each sent again or skipped since this process started.
	Peers []broker.SessionInfo `json:"peers,omitempty"`
	// RoutedDuplicates and RoutedGaps sum them over every peer; StaleQueries counts queries
	// answered from local copies because a designated router could not be asked.
	RoutedDuplicates uint64 `json:"routed_duplicates"`
	RoutedGaps       uint64 `json:"routed_gaps"`
	StaleQueries     uint64 `json:"stale_queries"`
}

// AccessStats counts what authentication, grants and abuse limits refused.
type AccessStats struct {
	Open               bool   `json:"open"`
	Accepted           uint64 `json:"auth_accepted"`
	AuthRefused        uint64 `json:"auth_refused"`
	NotAuthorized      uint64 `json:"not_authorized"`
	RefusedConnections uint64 `json:"refused_connections"`
	RefusedClientID    uint64 `json:"refused_client_id"`
	RefusedRate        uint64 `json:"refused_rate"`
	RefusedPayload     uint64 `json:"refused_payload"`
	Throttled          uint64 `json:"throttled"`
}

// StoreStats describes the durable store.
type StoreStats struct {
	DataDir   string `json:"data_dir"`
	Sync      string `json:"sync,omitempty"`
	DiskBytes int64  `json:"disk_bytes"`
}

// Stats collects the figures; top lists the sessions with the deepest queues.
func (s *Server) Stats(top int) Stats {
	b := s.Broker.Stats()
	st := Stats{
		Sessions: b.Sessions.Load(), Connected: b.Connected.Load(), Subscriptions: b.Subscriptions.Load(),
		Retained: b.Retained.Load(), Queued: b.Queued.Load(), Received: b.Received.Load(),
		Delivered: b.Delivered.Load(), DroppedQueueFull: b.DroppedQueueFull.Load(),
		RefusedQueueFull: b.RefusedQueueFull.Load(), DroppedSlow: b.DroppedSlow.Load(),
		DroppedOffline: b.DroppedOffline.Load(), Expired: b.Expired.Load(), StoreErrors: b.StoreErrors.Load(),
		Store:       StoreStats{DataDir: s.cfg.DataDir, DiskBytes: s.Store.DiskBytes()},
		TopSessions: s.Broker.Sessions(top),
		Cluster:     s.clusterStatus(),
	}
	if s.cfg.DataDir != "" {
		st.Store.Sync = s.cfg.Store.Sync
	}
	st.Route = s.routeStats()
	a := s.Auth.Stats()
	st.Access = AccessStats{
		Open: s.Auth.Open(), Accepted: a.Accepted.Load(),
		AuthRefused: a.UnknownUser.Load() + a.WrongPassword.Load() + a.BadToken.Load() + a.ExpiredToken.Load() +
			a.URLDenied.Load() + a.Unavailable.Load() + a.Backoff.Load() + a.AnonymousRefused.Load(),
		NotAuthorized: b.NotAuthorized.Load(), RefusedConnections: b.RefusedConnections.Load(),
		RefusedClientID: b.RefusedClientID.Load(), RefusedRate: b.RefusedRate.Load(),
		RefusedPayload: b.RefusedPayload.Load(), Throttled: b.Throttled.Load(),
	}
	return st
}

func (s *Server) routeStats() *RouteStats {
	if s.RouterID == "" {
		return nil
	}
	b := s.Broker.Stats()
	rs := &RouteStats{RouterID: s.RouterID, Designated: s.cfg.Route.Designated,
		RoutedDuplicates: b.RoutedDuplicates.Load(), RoutedGaps: b.RoutedGaps.Load(), StaleQueries: b.StaleQueries.Load()}
	if s.Uplinks != nil {
		rs.Uplinks = s.Uplinks.Stats()
	}
	if s.cfg.Route.Listen != "" {
		for _, si := range s.Broker.Sessions(0) {
			if strings.HasPrefix(si.ClientID, "$route/") {
				rs.Peers = append(rs.Peers, si)
			}
		}
	}
	return rs
}

// serveStats answers GET /v1/stats[?sessions=N] (N sessions with the deepest queues, default 20).
func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	top := 20
	if v := r.URL.Query().Get("sessions"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 10000 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"code":"bad_parameter","message":"sessions must be 0..10000"}}` + "\n"))
			return
		}
		top = n
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.Stats(top))
}
