// Package topictest holds the mix of filters and topics that the index's churn benchmarks and
// bench/subload both use, so the figures of one speak of the same workload as the other's.
package topictest

import "strconv"

// kinds are the last level of the exact device filters.
var kinds = []string{"temp", "humidity", "pressure", "status", "alarm", "cmd", "config", "battery", "location", "firmware"}

// Filter is the i-th of a realistic mix of distinct filters: mostly exact device topics, then
// per-device single-level wildcards, per-site multi-level wildcards and deeper mixes.
func Filter(i int) string {
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

// Topic is a topic that Filter(i) matches and no Filter(j), j != i, does: a publisher that
// sends to these gives every message exactly one subscriber, whichever of the exact, + and #
// filters it hits.
func Topic(i int) string {
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
