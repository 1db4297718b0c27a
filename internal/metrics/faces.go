package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/mbus"
	"github.com/ternmq/tern/internal/webhook"
)

// Faces are the counters of the HTTP face, WebSocket endpoints, mBus and webhooks.
type Faces struct {
	HTTP *httpapi.Stats
	MBus *mbus.Stats
	// WebSockets are the open WebSocket connections by endpoint ("mqtt", "mbus", "api" for
	// /v1/ws, "isimud" for /sub).
	WebSockets map[string]*atomic.Int64
	// Webhooks, when set, reports its counters and each hook's lag.
	Webhooks *webhook.Manager
}

// RegisterFaces adds f's counters to reg.
func RegisterFaces(reg prometheus.Registerer, f Faces) {
	counter := func(name, help string, v *atomic.Uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) }))
	}
	gauge := func(name, help string, labels prometheus.Labels, v *atomic.Int64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) }))
	}
	if f.HTTP != nil {
		gauge("tern_http_streams", "Open HTTP subscriptions: Server-Sent Events, NDJSON streams and long-polls.", nil, &f.HTTP.Streams)
		gauge("tern_http_connections_parked", "HTTP subscribers (WebSockets of /v1/ws and /sub, SSE and NDJSON streams over HTTP/1.x) waiting for their client in the poller, without a goroutine.", nil, &f.HTTP.Parked)
		counter("tern_http_published_total", "Messages published over HTTP (POST /v1/pub and isimud's /pub).", &f.HTTP.Published)
		counter("tern_http_requests_total", "Requests and calls over HTTP that waited for a reply (/v1/req, /v1/call).", &f.HTTP.Requests)
	}
	for endpoint, v := range f.WebSockets {
		gauge("tern_websocket_clients", "Open WebSocket connections, by endpoint.", prometheus.Labels{"endpoint": endpoint}, v)
	}
	if f.MBus != nil {
		counter("tern_mbus_connections_accepted_total", "mBus connections accepted (TCP, TLS, Unix socket and WebSocket).", &f.MBus.Accepted)
		gauge("tern_mbus_connections_open", "mBus connections open.", nil, &f.MBus.Open)
		counter("tern_mbus_bad_input_total", "mBus clients closed for input tern could not read.", &f.MBus.BadInput)
		counter("tern_mbus_slow_drops_total", "mBus clients closed because their outgoing buffer filled.", &f.MBus.SlowDrops)
	}
	if w := f.Webhooks; w != nil {
		st := w.Stats()
		counter("tern_webhook_attempts_total", "Webhook delivery attempts (requests made to endpoints).", &st.Attempts)
		counter("tern_webhook_delivered_total", "Webhook deliveries the endpoint answered with 2xx.", &st.Delivered)
		counter("tern_webhook_failures_total", "Webhook delivery attempts that failed (retried or dead-lettered).", &st.Failed)
		counter("tern_webhook_dead_letters_total", "Messages webhooks gave up on and published to their dead-letter topic.", &st.DeadLettered)
		reg.MustRegister(lagCollector{w})
	}
}

var lagDesc = prometheus.NewDesc("tern_webhook_lag_seconds",
	"Age of the oldest message a webhook has not delivered yet (0: none waiting).", []string{"webhook"}, nil)

// lagCollector reports each hook's lag when scraped (there are at most webhooks.max_hooks).
type lagCollector struct{ m *webhook.Manager }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	for id, lag := range c.m.Lags() {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, lag, id)
	}
}
