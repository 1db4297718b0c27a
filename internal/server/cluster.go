package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/cluster"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/webhook"
)

// A cluster node is assembled in three steps around the core: openCluster before the
// authenticator (whose users, groups and tokens are the cluster's replicated records),
// startCluster once the core exists (raft starts, the node joins or resumes, and the core
// routes through it), and the HTTP routes and metrics below.

// authNamespaces are the records auth keeps; a new cluster starts with the data directory's.
var authNamespaces = []string{"users", "groups", "tokens"}

// openCluster opens the node's raft database in <data-dir>/raft.
func openCluster(cfg config.Config, st store.Store, log *slog.Logger) (*cluster.Node, error) {
	c := cfg.Cluster
	cc := cluster.Config{NodeID: c.NodeID, Listen: c.Listen, Advertise: c.Advertise, Join: c.Join,
		Dir: filepath.Join(cfg.DataDir, "raft"), MaxFrame: maxFrame(cfg), Log: log,
		Seed: func() ([]cluster.Record, error) { return seedRecords(st.Records()) }}
	if t := cfg.TLS; t.CertFile != "" && t.ClientCAFile != "" {
		var err error
		if cc.TLS, err = cluster.NewNodeTLS(t.CertFile, t.KeyFile, t.ClientCAFile); err != nil {
			return nil, err
		}
		san := t.IdentitySAN
		cc.Identity = func(cs tls.ConnectionState) string { return certs.Identity(cs, san) }
	}
	return cluster.Open(cc)
}

// maxFrame bounds a node link frame: the largest message any face accepts, with room for its
// properties.
func maxFrame(cfg config.Config) int {
	return max(cfg.MQTT.MaxPacketSize, int(cfg.HTTP.MaxBody), cfg.Limits.MaxPayload) + 64<<10
}

// seedRecords reads the users, groups and tokens a data directory had before it became the
// first node of a cluster.
func seedRecords(r store.Records) ([]cluster.Record, error) {
	var out []cluster.Record
	for _, ns := range authNamespaces {
		err := r.Scan(ns, func(k string, v []byte) error {
			out = append(out, cluster.Record{NS: ns, Key: k, Value: v})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// coreStore is the store the core runs on: on a cluster node, the replica over the node's own
// store (client sessions replicated through the cluster's log).
func coreStore(n *cluster.Node, st store.Store) (store.Store, error) {
	if n == nil {
		return st, nil
	}
	return n.SessionStore(st)
}

// startCluster starts the node: replicated auth writes end open mode here too, and the core
// routes and replicates retained messages through the node.
func startCluster(n *cluster.Node, a *auth.Authenticator, b *broker.Broker, log *slog.Logger) error {
	n.WatchRecords(a.RecordsChanged)
	b.SetCluster(n)
	if err := n.Start(b, b); err != nil {
		return err
	}
	st := n.Status()
	log.Info("cluster node running", "node", st.Node, "state", st.State, "leader", st.Leader, "members", len(st.Members))
	return nil
}

// registerCluster serves GET /v1/cluster (the node's view: members, leader, raft indexes, lag,
// links), POST /v1/cluster/leave and POST /v1/cluster/remove/{node}, all needing admin on
// "cluster" once auth is on.
func (s *Server) registerCluster(mux *http.ServeMux, id netio.Identify) {
	resource := func(*http.Request) string { return "cluster" }
	mux.Handle("GET /v1/cluster", httpauth.Require(s.Auth, httpauth.Identify(id), auth.Admin, resource,
		http.HandlerFunc(s.serveClusterStatus)))
	mux.Handle("POST /v1/cluster/leave", httpauth.Require(s.Auth, httpauth.Identify(id), auth.Admin, resource,
		http.HandlerFunc(s.serveClusterLeave)))
	mux.Handle("POST /v1/cluster/remove/{node}", httpauth.Require(s.Auth, httpauth.Identify(id), auth.Admin, resource,
		http.HandlerFunc(s.serveClusterRemove)))
}

// serveClusterRemove removes another node, gone for good, from the cluster (?force=true: even
// one still reachable, or one whose removal leaves no majority reachable).
func (s *Server) serveClusterRemove(w http.ResponseWriter, r *http.Request) {
	if s.Cluster == nil {
		httpauth.WriteError(w, http.StatusNotFound, "not_clustered", "this tern is not a cluster node")
		return
	}
	force := false
	if f := r.URL.Query().Get("force"); f != "" {
		var err error
		if force, err = strconv.ParseBool(f); err != nil {
			httpauth.WriteError(w, http.StatusBadRequest, "bad_request", "force must be true or false")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	node := r.PathValue("node")
	if err := s.Cluster.Remove(ctx, node, force); err != nil {
		status, code := http.StatusConflict, "remove_failed"
		switch {
		case errors.Is(err, cluster.ErrNotMember):
			status, code = http.StatusNotFound, "not_member"
		case errors.Is(err, cluster.ErrRemoveRefused):
			code = "remove_refused"
		case errors.Is(err, cluster.ErrNoLeader):
			status, code = http.StatusServiceUnavailable, "unavailable"
		}
		httpauth.WriteError(w, status, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"removed": node})
}

func (s *Server) serveClusterStatus(w http.ResponseWriter, _ *http.Request) {
	if s.Cluster == nil {
		httpauth.WriteError(w, http.StatusNotFound, "not_clustered", "this tern is not a cluster node")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.Cluster.Status())
}

// serveClusterLeave removes this node from its cluster; the node then stops (Done).
func (s *Server) serveClusterLeave(w http.ResponseWriter, r *http.Request) {
	if s.Cluster == nil {
		httpauth.WriteError(w, http.StatusNotFound, "not_clustered", "this tern is not a cluster node")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.Cluster.Leave(ctx); err != nil {
		status, code := http.StatusConflict, "leave_failed"
		if errors.Is(err, cluster.ErrNoLeader) {
			status, code = http.StatusServiceUnavailable, "unavailable"
		}
		httpauth.WriteError(w, status, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"left":true}` + "\n"))
}

// Done is closed when the server should stop on its own: its cluster node left the cluster.
func (s *Server) Done() <-chan struct{} {
	if s.Cluster == nil {
		return nil
	}
	return s.Cluster.Left()
}

// clusterStatus is the node's status for /v1/stats, nil when not clustered.
func (s *Server) clusterStatus() *cluster.Status {
	if s.Cluster == nil {
		return nil
	}
	st := s.Cluster.Status()
	return &st
}

// registerClusterMetrics exports the node's figures on /metrics.
func (s *Server) registerClusterMetrics(reg *prometheus.Registry) {
	n := s.Cluster
	if n == nil {
		return
	}
	gauge := func(name, help string, f func(cluster.Status) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(n.Status()) }))
	}
	counter := func(name, help string, f func(cluster.Status) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return f(n.Status()) }))
	}
	gauge("tern_cluster_leader", "1 while this node leads the cluster.", func(st cluster.Status) float64 {
		if st.State == "leader" {
			return 1
		}
		return 0
	})
	gauge("tern_cluster_members", "Nodes in the cluster's configuration.", func(st cluster.Status) float64 { return float64(len(st.Members)) })
	gauge("tern_cluster_links_up", "Other nodes this node's link reaches.", func(cluster.Status) float64 { return float64(n.LinksUp()) })
	gauge("tern_cluster_commit_index", "Raft commit index.", func(st cluster.Status) float64 { return float64(st.CommitIndex) })
	gauge("tern_cluster_applied_index", "Raft index applied on this node.", func(st cluster.Status) float64 { return float64(st.AppliedIndex) })
	gauge("tern_cluster_max_lag", "Largest lag of a member behind this node's commit index, in log entries.", func(st cluster.Status) float64 {
		var m uint64
		for _, x := range st.Members {
			m = max(m, x.Lag)
		}
		return float64(m)
	})
	counter("tern_cluster_forwarded_total", "Messages sent to other nodes.", func(st cluster.Status) float64 { return float64(st.Forwarded) })
	counter("tern_cluster_received_total", "Messages other nodes sent here.", func(st cluster.Status) float64 { return float64(st.Received) })
	counter("tern_cluster_dropped_total", "Messages not sent to a node whose link was down or full.", func(st cluster.Status) float64 { return float64(st.Dropped) })
	counter("tern_cluster_failed_total", "QoS 1/2 messages another node did not accept.", func(st cluster.Status) float64 { return float64(st.Failed) })
}

// newWebhooks starts the webhooks. On a cluster node their definitions are the cluster's records
// (a hook created on any node exists on every node) and the node holding a hook's session in the
// directory delivers it: the node that created it, until that node dies and the session moves.
func newWebhooks(cfg config.Config, n *cluster.Node, b *broker.Broker, st store.Store, log *slog.Logger) (*webhook.Manager, error) {
	wc := webhook.ConfigFrom(cfg.Webhooks)
	if n == nil {
		return webhook.New(b, st.Records(), wc, log)
	}
	wc.Node, wc.Directory = cfg.Cluster.NodeID, n
	m, err := webhook.New(b, n.Records(), wc, log)
	if err == nil {
		n.WatchRecords(m.RecordsChanged)
		n.WatchSessions(m.SessionsChanged)
		m.RecordsChanged("webhooks") // a change applied between New's read and the watch
	}
	return m, err
}
