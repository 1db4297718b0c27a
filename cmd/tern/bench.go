package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/bench"
	"github.com/ternmq/tern/internal/mqttclient"
)

func init() { rootCmd.AddCommand(newBenchCmd()) }

func newBenchCmd() *cobra.Command {
	var (
		cfg       bench.Config
		qos       int
		asJSON    bool
		reflector bool
		idle      bench.IdleOptions
		keepAlive int
		tlsGroups string
		phase     string
		runID     string
		expiry    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure an MQTT broker: throughput, loss and latency",
		Long: `Drive an MQTT broker (tern, Mosquitto, nats-server's MQTT port...) with N publishers
and M subscribers and report what was sent, delivered, lost and duplicated, the publish and
delivery rates, and the latency of every message (p50 p90 p99 p99.9 p99.99 max, in µs, from an
HDR histogram: each percentile within 0.8 % of the true value).

Publisher i publishes to TOPIC/i; each subscriber subscribes to TOPIC/# and so receives every
publisher's messages (with --shared they share $share/bench/TOPIC/# instead). The run stops after
-n messages per publisher or after -d, whichever comes first; subscribers then wait for the rest,
up to --drain after deliveries stop, and what never came is reported lost.

With --rate each publisher sends on a fixed schedule, for latency at a moderate load, and each
message's latency runs from the time it was scheduled, not the time it was written: when the
broker holds a publisher up (full socket buffers, a full QoS 1/2 window), the messages that fell
due meanwhile count the wait (corrected for coordinated omission). Without --rate there is no
schedule and latency runs from the write, so a stall shows only in the messages in flight.
With --reflector the run targets a trivial in-process forwarder instead of a broker, which shows
the load tool's own ceiling. With --idle-conns N it only opens N subscribed connections, prints
a "ready" line with the connect rate, CONNECT to CONNACK times and dial times (TCP connect and
TLS handshake; with --tls-resume, how many resumed), holds them idle for --hold
(pinging at half of --keep-alive), with --fanout times one message to all of them, and exits
(for measuring memory per connection, connect storms and fan-out to many connections).

With --persistent the subscribers have persistent sessions under fixed client ids
(tern-bench-<run id>-s<i>): clean session 0 in MQTT 3.1.1, clean start 0 with a session expiry
of --session-expiry in 5, so a broker with a durable store keeps them on disk. At the end the run
removes them (each id reconnects with a clean session and disconnects), unless --keep-sessions.

--phase splits a persistent run, to look at a broker with a backlog for offline sessions. Give
every phase the same --run-id, --topic and -s:
  subscribe  the subscribers' persistent sessions subscribe and disconnect (sessions kept)
  run        (the default) with -s 0 the publishers fill the offline sessions' queues
  drain      the sessions reconnect, without subscribing, and count what was queued: -p and -n
             must be those of the filling run; it ends when all came, after --drain without
             any, or after -d; the sessions are then removed unless --keep-sessions`,
		Example: `  tern bench --url mqtt://127.0.0.1:1883 -n 200000
  tern bench -q 1 -p 4 -s 4 -n 50000 --json
  tern bench --rate 10000 -n 100000 -d 15s        # latency at 10k msg/s
  tern bench --reflector -n 1000000               # the client's own ceiling
  tern bench --idle-conns 5000 --hold 20s
  tern bench -q 1 --persistent -n 100000          # QoS 1 to a persistent session
  tern bench --phase subscribe --run-id beef -q 1 -s 1 --topic backlog
  tern bench --run-id beef -q 1 -s 0 -n 5000 --topic backlog    # queued for the offline session
  tern bench --phase drain --run-id beef -q 1 -s 1 -n 5000 --topic backlog`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if qos < 0 || qos > 2 {
				return fmt.Errorf("QoS %d: must be 0, 1 or 2", qos)
			}
			cfg.QoS = byte(qos)
			if runID != "" {
				id, err := strconv.ParseUint(runID, 16, 32)
				if err != nil || id == 0 {
					return fmt.Errorf("--run-id %q: want 1 to 8 hex digits, not all zero", runID)
				}
				cfg.RunID = uint32(id)
			}
			if expiry < time.Second || expiry > math.MaxUint32*time.Second {
				return fmt.Errorf("--session-expiry %s: must be from 1s to %ds", expiry, uint32(math.MaxUint32))
			}
			cfg.SessionExpiry = uint32(expiry / time.Second)
			switch phase {
			case "run", "subscribe", "drain":
			default:
				return fmt.Errorf("--phase %q: use run, subscribe or drain", phase)
			}
			if phase != "run" && (reflector || idle.Conns > 0) {
				return errors.New("--phase cannot be combined with --reflector or --idle-conns")
			}
			ctx, stop := commandContext(cmd)
			defer stop()
			out := cmd.OutOrStdout()
			if reflector {
				r, err := bench.StartReflector("127.0.0.1:0")
				if err != nil {
					return err
				}
				defer r.Close()
				cfg.URL = "mqtt://" + r.Addr()
			} else if _, err := mqttclient.Parse(cfg.URL); err != nil {
				return err
			}
			groups, err := mqttclient.ParseGroups(tlsGroups)
			if err != nil {
				return fmt.Errorf("--tls-groups: %w", err)
			}
			cfg.TLSGroups = groups
			if cfg.SubscriberURL != "" {
				if _, err := mqttclient.Parse(cfg.SubscriberURL); err != nil {
					return fmt.Errorf("--sub-url: %w", err)
				}
			}
			if idle.Conns > 0 {
				if idle.Hold <= 0 {
					return errors.New("--hold must be positive")
				}
				if keepAlive < 0 || keepAlive > math.MaxUint16 {
					return fmt.Errorf("--keep-alive %d: from 0 to %d seconds", keepAlive, math.MaxUint16)
				}
				idle.KeepAlive = uint16(keepAlive)
				res, err := bench.Idle(ctx, cfg, idle, func(r bench.IdleResult) {
					fmt.Fprintf(out, "ready: %d connections open and subscribed in %.2f s (%.0f/s, CONNECT to CONNACK p50 %.0f µs, p99 %.0f µs; dial p50 %.0f µs, p99 %.0f µs; %d TLS resumed%s)\n",
						r.Opened, r.ConnectSeconds, r.ConnectsPerSecond, r.ConnackP50, r.ConnackP99, r.DialP50, r.DialP99, r.TLSResumed, groupNote(r.TLSGroup))
				})
				if err != nil {
					return fmt.Errorf("%w (%d connections were open)", err, res.Opened)
				}
				if asJSON {
					return json.NewEncoder(out).Encode(res)
				}
				fmt.Fprintf(out, "idle: %d connections held for %s, %d dropped by the broker\n", res.Opened, idle.Hold, res.Dropped)
				if idle.FanOut {
					fmt.Fprintf(out, "fan-out: %d connections had the message %.1f ms after its publish (sweeps of up to %.1f ms)\n",
						res.FanOutReceived, res.FanOutLastMS, res.FanOutSweepMS)
				}
				return nil
			}
			if phase == "subscribe" {
				res, err := bench.Subscribe(ctx, cfg)
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(out).Encode(res)
				}
				fmt.Fprintf(out, "subscribed: %d persistent sessions of run %s (%s ... %s, %d resumed) to %s at QoS %d, now offline\n",
					len(res.ClientIDs), res.RunID, res.ClientIDs[0], res.ClientIDs[len(res.ClientIDs)-1], res.Resumed, res.Filter, res.QoS)
				return nil
			}
			run := bench.Run
			if phase == "drain" {
				run = bench.Drain
			}
			res, err := run(ctx, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			return res.WriteText(out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", mqttclient.DefaultURL, "broker URL: mqtt://host:port, unix:///path or mqtts://host:port")
	f.StringVar(&cfg.SubscriberURL, "sub-url", "", "subscribers connect here instead of --url (another node of a cluster)")
	f.StringVar(&cfg.CAFile, "cafile", "", "PEM file of certificate authorities to trust for mqtts://")
	f.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the server certificate")
	f.BoolVar(&cfg.TLSResume, "tls-resume", false, "mqtts://: share a TLS session cache so reconnections resume (TLS 1.3 tickets); an --idle-conns storm primes it with one connection first")
	f.StringVar(&tlsGroups, "tls-groups", "", "mqtts://: offer only these TLS key exchanges, comma-separated (x25519mlkem768, x25519, p256, p384, p521; default Go's, post-quantum first)")
	f.StringVar(&cfg.MQTTVersion, "mqtt-version", "3.1.1", "protocol version: 3.1.1 or 5")
	f.IntVarP(&cfg.Publishers, "publishers", "p", 1, "number of publishers")
	f.IntVarP(&cfg.Subscribers, "subscribers", "s", 1, "number of subscribers")
	f.IntVar(&cfg.Size, "size", 128, fmt.Sprintf("payload size in bytes (at least %d)", bench.MinSize))
	f.IntVarP(&qos, "qos", "q", 0, "QoS of publishes and subscriptions: 0, 1 or 2")
	f.IntVarP(&cfg.Count, "count", "n", 100000, "messages per publisher (0: until --duration)")
	f.DurationVarP(&cfg.Duration, "duration", "d", 30*time.Second, "longest time to publish")
	f.Float64Var(&cfg.Rate, "rate", 0, "messages per second per publisher (0: as fast as possible)")
	f.StringVar(&cfg.Topic, "topic", "bench", "topic base: publishers use BASE/<i>, subscribers BASE/#")
	f.BoolVar(&cfg.Shared, "shared", false, "subscribers share one subscription ($share/bench/BASE/#)")
	f.IntVar(&cfg.Warmup, "warmup", 0, "messages per publisher sent first and left out of the figures")
	f.DurationVar(&cfg.Drain, "drain", 2*time.Second, "how long to wait for missing messages once deliveries stop")
	f.IntVar(&cfg.Inflight, "inflight", 0, "QoS 1/2 window per publisher (default 64 for 3.1.1, the broker's Receive Maximum for 5)")
	f.IntVar(&cfg.BatchBytes, "batch", 32<<10, "bytes a publisher encodes before each write")
	f.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 10*time.Second, "timeout for each connect and subscribe")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.BoolVar(&reflector, "reflector", false, "measure against a trivial in-process forwarder (the client's ceiling)")
	f.IntVar(&idle.Conns, "idle-conns", 0, "only open this many idle subscribed connections and hold them")
	f.DurationVar(&idle.Hold, "hold", 20*time.Second, "with --idle-conns: how long to hold the connections")
	f.IntVar(&keepAlive, "keep-alive", 0, "with --idle-conns: keep alive in seconds (pinged at half of it)")
	f.IntVar(&idle.Concurrency, "concurrency", 32, "with --idle-conns: connections being opened at once")
	f.IntVar(&idle.SourceAddrs, "source-addrs", 1, "with --idle-conns: spread connections over 127.0.0.1 ... 127.0.0.N (mqtt:// only)")
	f.BoolVar(&idle.FanOut, "fanout", false, "with --idle-conns: at the end of the hold, time a QoS 0 message to all of them")
	f.BoolVar(&cfg.Persistent, "persistent", false, "subscribers use persistent sessions (removed at the end unless --keep-sessions)")
	f.DurationVar(&expiry, "session-expiry", time.Hour, "MQTT 5 session expiry interval of persistent sessions")
	f.BoolVar(&cfg.KeepSessions, "keep-sessions", false, "leave the persistent sessions in the broker at the end")
	f.StringVar(&runID, "run-id", "", "run id in hex (default random); phases of one persistent run share it")
	f.StringVar(&phase, "phase", "run", "run, subscribe (persistent sessions subscribe and go offline) or drain (they come back and count their queues)")
	return cmd
}

// groupNote names the TLS key exchange a storm negotiated, for the "ready" line.
func groupNote(g string) string {
	if g == "" {
		return ""
	}
	return ", key exchange " + g
}
