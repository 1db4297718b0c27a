package cluster

import (
	"fmt"
	"testing"
)

// released says a message may have been meant for a session that left after the sender's index
// only when one did and its subscriptions match the topic; what it forgot (beyond maxReleased)
// counts as matching.
func TestReleasedSince(t *testing.T) {
	var r released
	r.add(10, []string{"a/+", "$share/g/b/#"})
	r.add(20, []string{"c"})
	r.add(30, nil) // a session with no subscriptions: nothing was sent for it
	for _, c := range []struct {
		i     uint64
		topic string
		want  bool
	}{
		{9, "a/x", true},
		{9, "b/y/z", true},
		{10, "a/x", false}, // the sender already knew
		{10, "c", true},
		{19, "d", false},
		{20, "c", false},
		{0, "$SYS/x", false},
	} {
		if got := r.since(c.i, c.topic); got != c.want {
			t.Errorf("since(%d, %q) = %v, want %v", c.i, c.topic, got, c.want)
		}
	}
	for k := range maxReleased {
		r.add(uint64(100+k), []string{fmt.Sprintf("n/%d", k)})
	}
	if len(r.recent) != maxReleased {
		t.Fatalf("remembers %d releases, want at most %d", len(r.recent), maxReleased)
	}
	if !r.since(15, "nothing/matches") {
		t.Error("a message sent before a forgotten release is not refused")
	}
	if r.since(100, "nothing/matches") {
		t.Error("a message sent after every forgotten release is refused")
	}
	if !r.since(100, fmt.Sprintf("n/%d", maxReleased-1)) {
		t.Error("the latest release is not found")
	}
}
