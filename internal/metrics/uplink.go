package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/uplink"
)

// RegisterUplinks exports each uplink's state as tern_uplink_* with an "uplink" label, read from
// stats when scraped.
func RegisterUplinks(reg prometheus.Registerer, stats func() []uplink.LinkStats) {
	reg.MustRegister(uplinkCollector{stats: stats})
}

type uplinkMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(uplink.LinkStats) float64
}

func uplinkDesc(name, help string, kind prometheus.ValueType, value func(uplink.LinkStats) float64) uplinkMetric {
	return uplinkMetric{desc: prometheus.NewDesc("tern_uplink_"+name, help, []string{"uplink"}, nil), kind: kind, value: value}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var uplinkMetrics = []uplinkMetric{
	uplinkDesc("connected", "1 while the uplink is connected to its designated router.", prometheus.GaugeValue,
		func(s uplink.LinkStats) float64 { return b2f(s.Connected) }),
	uplinkDesc("queued_messages", "Messages waiting in the uplink's trunk queue.", prometheus.GaugeValue,
		func(s uplink.LinkStats) float64 { return float64(s.Queued) }),
	uplinkDesc("queued_bytes", "Bytes waiting in the uplink's trunk queue.", prometheus.GaugeValue,
		func(s uplink.LinkStats) float64 { return float64(s.QueuedBytes) }),
	uplinkDesc("oldest_age_seconds", "Age of the oldest message in the trunk queue.", prometheus.GaugeValue,
		func(s uplink.LinkStats) float64 { return s.OldestAgeSeconds }),
	uplinkDesc("inflight", "Forwarded messages awaiting the designated router's acknowledgement.", prometheus.GaugeValue,
		func(s uplink.LinkStats) float64 { return float64(s.Inflight) }),
	uplinkDesc("sent_total", "Messages sent up (re-sends included).", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.Sent) }),
	uplinkDesc("resent_total", "Messages sent up again after a reconnect.", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.Resent) }),
	uplinkDesc("acked_total", "Messages the designated router acknowledged.", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.Acked) }),
	uplinkDesc("refused_upstream_total", "Messages the designated router refused.", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.RefusedUpstream) }),
	uplinkDesc("dropped_full_total", "Messages dropped from the full trunk queue (oldest first).", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.DroppedFull) }),
	uplinkDesc("refused_full_total", "Messages refused by the full trunk queue (queue_full_policy refuse).", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.RefusedFull) }),
	uplinkDesc("expired_total", "Messages that expired in the trunk queue.", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.Expired) }),
	uplinkDesc("too_large_total", "Messages larger than the designated router takes.", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.TooLarge) }),
	uplinkDesc("reconnects_total", "Times the uplink came up again after it went down.", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.Reconnects) }),
	uplinkDesc("connect_failures_total", "Attempts to connect that failed.", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.ConnFailures) }),
	uplinkDesc("received_total", "Messages that came down and were published here.", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.Received) }),
	uplinkDesc("down_duplicates_total", "Messages the designated router sent again, dropped here.", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.DownDuplicates) }),
	uplinkDesc("down_gaps_total", "Numbers the designated router skipped (its queue for this site dropped them).", prometheus.CounterValue,
		func(s uplink.LinkStats) float64 { return float64(s.DownGaps) }),
}

type uplinkCollector struct{ stats func() []uplink.LinkStats }

func (c uplinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range uplinkMetrics {
		ch <- m.desc
	}
}

func (c uplinkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.stats() {
		for _, m := range uplinkMetrics {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(s), s.Name)
		}
	}
}
