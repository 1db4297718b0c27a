package main

import "strconv"

var kinds = []string{"temp", "humidity", "pressure", "status", "alarm", "cmd", "config", "battery", "location", "firmware"}

// filter is the i-th distinct filter; the same mix as BenchmarkChurn1M.
func filter(i int) string {
	id := strconv.Itoa(i)
	switch i % 10 {
	case 0, 1, 2, 3, 4:
		return "device/" + id + "/" + kinds[i%len(kinds)]
	case 5, 6:
		return "device/" + id + "/+/status"
	case 7:
		return "site/" + id + "/#"
	case 8:
		return "site/" + strconv.Itoa(i%1000) + "/floor/" + id + "/+"
	default:
		return "fleet/+/" + id + "/#"
	}
}

// topic is a topic that filter(i) matches and no filter(j), j != i, does: the publisher of the
// churn phase sends to these, so every message has exactly one subscriber, whichever of the
// exact, + and # filters it hits.
func topic(i int) string {
	id := strconv.Itoa(i)
	switch i % 10 {
	case 0, 1, 2, 3, 4:
		return "device/" + id + "/" + kinds[i%len(kinds)]
	case 5, 6:
		return "device/" + id + "/x/status"
	case 7:
		return "site/" + id + "/a/b"
	case 8:
		return "site/" + strconv.Itoa(i%1000) + "/floor/" + id + "/x"
	default:
		return "fleet/f1/" + id + "/t"
	}
}

// target is the filter index the seq-th message goes to: round robin over the connections
// (connection c holds filters c*per ... c*per+per-1), so the deliveries spread over all of them.
func target(seq, conns, per int) int {
	c := seq % conns
	return c*per + (seq/conns)%per
}

// churnID is the filter index of the j-th filter churner k subscribes: beyond the n filters in
// place and distinct across churners, so every subscribe adds a filter the index has not got.
func churnID(n, churners, k, j int) int { return n + k + churners*j }
