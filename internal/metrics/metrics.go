// Package metrics exports tern's counters in the Prometheus format. The core and faces keep
// plain atomic counters; this package only reads them when scraped.
package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/mqtt"
)

// Register adds the core's, the MQTT face's and authentication's counters to reg.
func Register(reg prometheus.Registerer, b *broker.Stats, m *mqtt.Stats, a *auth.Stats) {
	counter := func(name, help string, v *atomic.Uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) }))
	}
	gauge := func(name, help string, v *atomic.Int64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) }))
	}
	counter("tern_messages_received_total", "Messages accepted for routing.", &b.Received)
	counter("tern_messages_delivered_total", "Deliveries handed to connections.", &b.Delivered)
	counter("tern_messages_dropped_slow_total", "QoS 0 deliveries dropped because the connection's buffer was full.", &b.DroppedSlow)
	counter("tern_messages_dropped_offline_total", "QoS 0 deliveries not queued for offline sessions.", &b.DroppedOffline)
	counter("tern_messages_dropped_queue_full_total", "Queued deliveries dropped to keep session queues within limits.", &b.DroppedQueueFull)
	counter("tern_messages_dropped_too_large_total", "Deliveries larger than the client's maximum packet size.", &b.DroppedTooLarge)
	counter("tern_messages_refused_queue_full_total", "Messages refused by a full session queue (policy refuse) or too big for its byte limit.", &b.RefusedQueueFull)
	counter("tern_store_errors_total", "Failed store operations.", &b.StoreErrors)
	counter("tern_messages_expired_total", "Queued messages that expired before delivery.", &b.Expired)
	gauge("tern_queued_messages", "Deliveries waiting in session queues.", &b.Queued)
	gauge("tern_sessions", "Sessions, connected or not.", &b.Sessions)
	gauge("tern_sessions_connected", "Sessions with a connected client.", &b.Connected)
	gauge("tern_subscriptions", "Subscriptions.", &b.Subscriptions)
	gauge("tern_retained_messages", "Retained messages.", &b.Retained)
	counter("tern_not_authorized_total", "Publishes and subscriptions refused by grants.", &b.NotAuthorized)
	counter("tern_connections_refused_limit_total", "Connects refused by limits.max_connections or max_connections_per_identity.", &b.RefusedConnections)
	counter("tern_connections_refused_client_id_total", "Connects refused because the client id's session belongs to another identity.", &b.RefusedClientID)
	counter("tern_publish_refused_rate_total", "Publishes refused by the publish rate limits.", &b.RefusedRate)
	counter("tern_publish_refused_payload_total", "Publishes refused by limits.max_payload.", &b.RefusedPayload)
	counter("tern_routed_duplicates_total", "Messages peer routers sent again that were already taken.", &b.RoutedDuplicates)
	counter("tern_routed_gaps_total", "Numbers peer routers skipped: messages their queue limits dropped.", &b.RoutedGaps)
	counter("tern_queries_stale_total", "Queries answered from local copies because the designated router could not be asked.", &b.StaleQueries)
	counter("tern_publish_throttled_total", "Publishes ahead of the rate limits, after which the publisher was paused.", &b.Throttled)

	refused := func(cause string, v *atomic.Uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tern_auth_refused_total",
			Help: "Authentications refused, by cause.", ConstLabels: prometheus.Labels{"cause": cause}},
			func() float64 { return float64(v.Load()) }))
	}
	counter("tern_auth_accepted_total", "Clients authenticated.", &a.Accepted)
	refused("unknown_user", &a.UnknownUser)
	refused("wrong_password", &a.WrongPassword)
	refused("bad_token", &a.BadToken)
	refused("expired_token", &a.ExpiredToken)
	refused("url_denied", &a.URLDenied)
	refused("unavailable", &a.Unavailable)
	refused("backoff", &a.Backoff)
	refused("anonymous", &a.AnonymousRefused)
	counter("tern_auth_url_requests_total", "Requests sent to the external authorization URL.", &a.URLRequests)
	counter("tern_auth_url_cache_hits_total", "External authorization decisions answered from the cache.", &a.URLCacheHits)

	counter("tern_mqtt_connections_accepted_total", "MQTT network connections accepted.", &m.Accepted)
	gauge("tern_mqtt_connections_open", "MQTT network connections open.", &m.Open)
	counter("tern_mqtt_connect_refused_total", "CONNECTs refused.", &m.ConnectRefused)
	counter("tern_mqtt_connect_too_large_total", "CONNECTs larger than mqtt.max_connect_size.", &m.ConnectTooLarge)
	counter("tern_mqtt_connect_memory_full_total", "Connections closed before login because connecting clients held mqtt.connect_memory.", &m.ConnectMemoryFull)
	counter("tern_mqtt_protocol_errors_total", "Connections closed for a protocol error.", &m.ProtocolErrors)
	counter("tern_mqtt_slow_consumers_total", "Connections closed because the client fell behind.", &m.SlowConsumers)
	counter("tern_mqtt_publish_stalls_total", "Times a publisher was paused for a receiver that was falling behind.", &m.PublishStalls)
	counter("tern_mqtt_store_failures_total", "Publishes acknowledged with a store failure instead of success.", &m.StoreFailures)
	counter("tern_mqtt_packets_received_total", "MQTT packets received after CONNECT.", &m.PacketsIn)
	counter("tern_mqtt_bytes_sent_total", "Bytes written to MQTT clients.", &m.BytesOut)
	gauge("tern_mqtt_connections_parked", "MQTT connections waiting for their client in the poller, without a goroutine.", &m.Parked)
	gauge("tern_mqtt_connections_detached", "Idle MQTT connections holding only their socket's descriptor (mqtt.detach_idle).", &m.Detached)
	counter("tern_mqtt_attaches_total", "Times a detached MQTT connection took Go's socket object again.", &m.Attaches)
}
