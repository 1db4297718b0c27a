package bench

import (
	"fmt"
	"math/bits"
)

// Result is what a run measured. Latencies are in microseconds.
type Result struct {
	URL         string  `json:"url"`
	MQTTVersion string  `json:"mqtt_version"`
	QoS         byte    `json:"qos"`
	Publishers  int     `json:"publishers"`
	Subscribers int     `json:"subscribers"`
	Shared      bool    `json:"shared"`
	Size        int     `json:"size"`
	Rate        float64 `json:"rate_per_publisher,omitempty"`
	// RunID is the run identifier (hex) in the stamps and client identifiers.
	RunID string `json:"run_id"`
	// Persistent says the subscribers had persistent sessions.
	Persistent bool `json:"persistent,omitempty"`
	// Phase is "drain" for what Drain measured, and empty for a whole run.
	Phase string `json:"phase,omitempty"`

	Sent       uint64 `json:"sent"`
	Expected   uint64 `json:"expected"`
	Delivered  uint64 `json:"delivered"`
	Lost       uint64 `json:"lost"`
	Duplicates uint64 `json:"duplicates"`
	// Foreign counts messages that were not this run's (another run's, or malformed).
	Foreign uint64 `json:"foreign,omitempty"`
	// Acked and Refused count QoS 1/2 acknowledgements; Unacked what got neither by the end.
	Acked   uint64 `json:"acked,omitempty"`
	Refused uint64 `json:"refused,omitempty"`
	Unacked uint64 `json:"unacked,omitempty"`
	// NoSubscribers counts v5 acknowledgements saying "no matching subscribers".
	NoSubscribers uint64 `json:"no_subscribers,omitempty"`
	Window        int    `json:"inflight_window,omitempty"`

	ElapsedSeconds        float64 `json:"elapsed_s"`
	PublishElapsedSeconds float64 `json:"publish_elapsed_s"`
	PublishRate           float64 `json:"publish_msgs_per_s"`
	DeliverRate           float64 `json:"delivered_msgs_per_s"`

	Latency Latency `json:"latency_us"`
	// LatencyFrom says where each latency starts: "schedule" at a fixed rate (the time the
	// message was due, so time the broker held the publisher up counts: corrected for
	// coordinated omission), "write" as fast as possible (no schedule: the time it was written).
	LatencyFrom string `json:"latency_from,omitempty"`
	// ClientCPUSeconds is the CPU time this process spent from the start of publishing to the
	// end of the run (publishers and subscribers; and the reflector, when it runs in-process).
	// Deliveries / ClientCPUSeconds is what the load tool could sustain per core.
	ClientCPUSeconds float64 `json:"client_cpu_s"`
	// Errors lists what went wrong on connections during the run (not lost messages).
	Errors []string `json:"errors,omitempty"`

	Hist *Histogram `json:"-"`
}

// Latency holds latency percentiles in microseconds. Min, Mean and Max are exact; a percentile
// is never below the true value and at most 1/128 above it (see Histogram).
type Latency struct {
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	P9999 float64 `json:"p99_99"`
	Max   float64 `json:"max"`
}

func latencyOf(h *Histogram) Latency {
	us := func(ns uint64) float64 { return float64(ns) / 1e3 }
	return Latency{Min: us(h.Min()), Mean: h.Mean() / 1e3, P50: us(h.Percentile(0.50)),
		P90: us(h.Percentile(0.90)), P99: us(h.Percentile(0.99)), P999: us(h.Percentile(0.999)),
		P9999: us(h.Percentile(0.9999)), Max: us(h.Max())}
}

// collect merges the publishers' and subscribers' counts into a Result.
func collect(cfg *Config, pubs []*publisher, subs []*subscriber, sent, expected uint64) *Result {
	r := newResult(cfg)
	r.Sent, r.Expected = sent, expected
	firstNs, lastPubNs := r.addPublishers(cfg, pubs)
	lastDelNs := r.addSubscribers(subs)
	for pi, p := range pubs {
		r.countDelivered(cfg, pi, p.sent(), subs)
	}
	r.setRates(firstNs, lastPubNs, lastDelNs)
	r.Latency = latencyOf(r.Hist)
	r.LatencyFrom = "write"
	if cfg.Rate > 0 {
		r.LatencyFrom = "schedule"
	}
	return r
}

// addPublishers adds the publishers' acknowledgements and errors, and returns when the first
// measured message was written (-1 for none) and the last.
func (r *Result) addPublishers(cfg *Config, pubs []*publisher) (firstNs, lastNs int64) {
	firstNs = -1
	for _, p := range pubs {
		if p.firstNs >= 0 && (firstNs < 0 || p.firstNs < firstNs) {
			firstNs = p.firstNs
		}
		lastNs = max(lastNs, p.lastNs)
		// Acknowledgements of warm-up messages are not counted.
		r.Acked += p.acked.Load() - min(p.acked.Load(), min(p.written, p.warm))
		r.Refused += p.refused.Load()
		r.NoSubscribers += p.noSubs.Load()
		r.Window = max(r.Window, p.window)
		if p.writeErr != nil && p.writeErr != errStopped {
			r.Errors = append(r.Errors, fmt.Sprintf("publisher %d: %v", p.idx, p.writeErr))
		}
		if p.readErr != nil && !isEndOfRun(p.readErr) {
			r.Errors = append(r.Errors, fmt.Sprintf("publisher %d: %v", p.idx, p.readErr))
		}
		if done := p.acked.Load() + p.refused.Load(); cfg.QoS > 0 && p.written > done {
			r.Unacked += p.written - done
		}
	}
	return firstNs, lastNs
}

// addSubscribers merges the subscribers' latencies, duplicates, foreign messages and errors,
// and returns when the last measured message arrived.
func (r *Result) addSubscribers(subs []*subscriber) (lastNs int64) {
	for _, s := range subs {
		r.Hist.Merge(s.hist)
		r.Duplicates += s.dups
		r.Foreign += s.foreign
		lastNs = max(lastNs, s.lastNs.Load())
		if s.err != nil {
			r.Errors = append(r.Errors, s.err.Error())
		}
	}
	return lastNs
}

// countDelivered adds what the subscribers received of the sent measured messages of
// publisher pi, and what they lost.
func (r *Result) countDelivered(cfg *Config, pi int, sent uint64, subs []*subscriber) {
	if !cfg.Shared {
		for _, s := range subs {
			u := s.receivedFrom(pi)
			r.Delivered += u
			if sent > u {
				r.Lost += sent - u
			}
		}
		return
	}
	// A message counts once whichever subscriber got it; a copy at a second one is a duplicate.
	var union []uint64
	var total uint64
	for _, s := range subs {
		total += s.receivedFrom(pi)
		set := s.seen[pi]
		if len(set) > len(union) {
			union = append(union, make([]uint64, len(set)-len(union))...)
		}
		for w, b := range set {
			union[w] |= b
		}
	}
	u := popcount(union)
	r.Delivered += u
	r.Duplicates += total - u
	if sent > u {
		r.Lost += sent - u
	}
}

// setRates turns the first write, last write and last delivery (ns since the start) into
// elapsed times and rates.
func (r *Result) setRates(firstNs, lastPubNs, lastDelNs int64) {
	if firstNs < 0 {
		return
	}
	if lastPubNs > firstNs {
		r.PublishElapsedSeconds = float64(lastPubNs-firstNs) / 1e9
		r.PublishRate = float64(r.Sent) / r.PublishElapsedSeconds
	}
	if lastDelNs > firstNs {
		r.ElapsedSeconds = float64(lastDelNs-firstNs) / 1e9
		r.DeliverRate = float64(r.Delivered) / r.ElapsedSeconds
	} else {
		r.ElapsedSeconds = r.PublishElapsedSeconds
	}
}

// newResult is a Result describing cfg, with no figures yet.
func newResult(cfg *Config) *Result {
	r := &Result{URL: cfg.URL, MQTTVersion: cfg.MQTTVersion, QoS: cfg.QoS, Publishers: cfg.Publishers,
		Subscribers: cfg.Subscribers, Shared: cfg.Shared, Size: cfg.Size, Rate: cfg.Rate,
		RunID: fmt.Sprintf("%08x", cfg.RunID), Persistent: cfg.Persistent, Hist: new(Histogram)}
	if cfg.Dial != nil && r.URL == "" {
		r.URL = "(custom dialer)"
	}
	return r
}

func popcount(set []uint64) uint64 {
	var n uint64
	for _, w := range set {
		n += uint64(bits.OnesCount64(w))
	}
	return n
}
