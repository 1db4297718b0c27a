//go:build unix

package main

import "github.com/ternmq/tern/internal/topic/topictest"

// filter is the i-th distinct filter (the mix of internal/topic's churn benchmarks), and topic
// a topic that it matches and no other filter(j) does: the publisher of the churn phase sends to
// these, so every message has exactly one subscriber.
var (
	filter = topictest.Filter
	topic  = topictest.Topic
)

// target is the filter index the seq-th message goes to: round robin over the connections
// (connection c holds filters c*per ... c*per+per-1), so the deliveries spread over all of them.
func target(seq, conns, per int) int {
	c := seq % conns
	return c*per + (seq/conns)%per
}

// churnID is the filter index of the j-th filter churner k subscribes: beyond the n filters in
// place and distinct across churners, so every subscribe adds a filter the index has not got.
func churnID(n, churners, k, j int) int { return n + k + churners*j }
