package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/memtune"
	"github.com/ternmq/tern/internal/server"
)

func init() {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker",
		Long: `Run the broker. With no configuration it listens on loopback only:
MQTT on 127.0.0.1:1883, HTTP (MQTT over WebSocket at /mqtt, /metrics, /healthz)
on 127.0.0.1:8080 and MQTT on the Unix socket ./tern.sock.

Settings come from the embedded defaults, then --config FILE (TOML), then TERN_*
environment variables, then flags. An empty address disables a listener.`,
		Args: cobra.NoArgs,
		RunE: runServe,
	}
	d := config.Default()
	f := cmd.Flags()
	f.String("config", "", "TOML configuration file")
	f.String("mqtt", d.Listen.MQTT, "MQTT over TCP listen address")
	f.String("mqtt-tls", d.Listen.MQTTTLS, "MQTT over TLS listen address, e.g. 127.0.0.1:8883")
	f.String("http", d.Listen.HTTP, "HTTP listen address (MQTT over WebSocket at /mqtt)")
	f.String("https", d.Listen.HTTPS, "HTTPS listen address (MQTT over secure WebSocket at /mqtt)")
	f.String("unix", d.Listen.Unix, "Unix socket path for MQTT")
	f.String("mbus", d.Listen.MBus, "mBus over TCP listen address, e.g. 127.0.0.1:8000 (off by default)")
	f.String("mbus-unix", d.Listen.MBusUnix, "mBus Unix socket path, e.g. /tmp/mbus-server-uds:0 (off by default)")
	f.String("mbus-tls", d.Listen.MBusTLS, "mBus over TLS listen address, e.g. 127.0.0.1:8001 (off by default)")
	f.String("mbus-unix-tls", d.Listen.MBusUnixTLS, "mBus over TLS on a Unix socket path, e.g. /tmp/mbus-server-udss:0 (off by default)")
	f.String("mbus-ws", d.Listen.MBusWS, "mBus over WebSocket, any path, e.g. 127.0.0.1:9000 as mbus-broker's (off by default)")
	f.String("mbus-wss", d.Listen.MBusWSS, "mBus over secure WebSocket, any path (off by default)")
	f.String("tls-cert", d.TLS.CertFile, "TLS certificate file (PEM) for the TLS listeners")
	f.String("tls-key", d.TLS.KeyFile, "TLS private key file (PEM) for the TLS listeners")
	f.String("tls-client-ca", d.TLS.ClientCAFile, "CA file (PEM) for client certificates (mutual TLS); a client's identity is its certificate's CN")
	f.String("data-dir", d.DataDir, "directory for durable state (empty: memory only)")
	f.String("sync", d.Store.Sync, "when acknowledged messages reach the disk: always (fsync before every acknowledgement, shared by concurrent publishers) or interval")
	f.Bool("store-accept-corruption", d.Store.AcceptCorruption, "start on a data directory with a damaged write-ahead log, losing what follows the damage (off: refuse, changing nothing)")
	f.String("log-level", d.LogLevel, "log level: debug, info, warn or error")
	f.String("log-format", d.LogFormat, "log format: text or json")
	f.String("node-id", d.Cluster.NodeID, "this node's id in a cluster (with --cluster-listen)")
	f.String("cluster-listen", d.Cluster.Listen, "cluster listen address for raft and node links, e.g. 127.0.0.1:7001 (off by default)")
	f.String("cluster-advertise", d.Cluster.Advertise, "address the other nodes dial to reach this one (default: --cluster-listen)")
	f.String("pprof", d.Debug.Pprof, "profiling listener (net/http/pprof at /debug/pprof/), e.g. 127.0.0.1:6060; loopback only unless debug.pprof_allow_remote (off by default)")
	f.StringSlice("join", d.Cluster.Join, "cluster addresses of nodes to join through when this node has no cluster state (none: start a new cluster)")
	rootCmd.AddCommand(cmd)
}

func runServe(cmd *cobra.Command, _ []string) error {
	path, _ := cmd.Flags().GetString("config")
	cfg, err := config.Load(path, cmd.Flags(), config.Environ)
	if err != nil {
		return err
	}
	log := cfg.NewLogger(os.Stderr)
	srv, err := server.Start(cfg, log)
	if err != nil {
		return err
	}
	log.Info("tern started", "version", version)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// SIGHUP reloads the TLS certificates, keys and client CA without a restart.
	certs.WatchSIGHUP(ctx, log, srv)
	memtune.Apply(ctx, memtune.Config{Limit: cfg.Memory.Limit, ContainerRatio: cfg.Memory.ContainerLimitRatio,
		ReleaseIdle: cfg.Memory.ReleaseIdle, IdleAfter: cfg.Memory.IdleAfter}, log)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case got := <-sig:
		log.Info("shutting down", "signal", got.String())
	case <-srv.Done():
		log.Info("shutting down: this node left its cluster")
	}
	return srv.Close()
}
