package server_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/broker"
)

// TestWildcards checks which published topics reach which filters, including "a/#" matching
// "a" and the $-topic rule: "#" and "+/x" do not match "$SYS/x", "$SYS/#" does.
func TestWildcards(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cases := []struct {
		filter string
		want   []string // topics, in publish order
	}{
		{"a/+/c", []string{"a/b/c", "a//c"}},
		{"a/#", []string{"a", "a/b", "a/b/c", "a//c"}},
		{"#", []string{"a", "a/b", "a/b/c", "a//c", "b/x", "x", "/x"}},
		{"+/x", []string{"b/x", "/x"}},
		{"+", []string{"a", "x"}},
		{"+/+", []string{"a/b", "b/x", "/x"}},
		{"$SYS/#", []string{"$SYS/x", "$SYS"}},
		{"$SYS/+", []string{"$SYS/x"}},
		{"a/b/c/#", []string{"a/b/c"}},
	}
	published := []string{"a", "a/b", "a/b/c", "a//c", "b/x", "x", "/x", "$SYS/x", "$SYS"}

	subs := make([]*v5Client, len(cases))
	for i, c := range cases {
		subs[i] = v5(t, srv, uniqueID("wild"))
		subs[i].sub(c.filter, 1)
		subs[i].sub(fmt.Sprintf("$marker/%d", i), 1)
	}
	pub := v5(t, srv, uniqueID("wildpub"))
	for _, topic := range published {
		pub.pub(topic, 1, topic)
	}
	for i := range cases {
		pub.pub(fmt.Sprintf("$marker/%d", i), 1, "marker")
	}
	for i, c := range cases {
		var got []string
		for _, m := range subs[i].until(fmt.Sprintf("$marker/%d", i)) {
			if !strings.HasPrefix(m.Topic, broker.EventsPrefix) { // the other clients' connects
				got = append(got, m.Topic)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("filter %q received %q, want %q", c.filter, got, c.want)
		}
	}
}

// TestSharedSubscriptions checks $share/g/f: the members of one group split the messages (each
// message to exactly one member), and two groups each get every message.
func TestSharedSubscriptions(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const n = 20
	type member struct {
		group string
		c     *v5Client
	}
	var members []member
	for _, g := range []string{"g1", "g2"} {
		for j := 0; j < 2; j++ {
			c := v5(t, srv, uniqueID("share-"+g))
			c.sub("$share/"+g+"/jobs/+", 1)
			c.sub("marker/"+c.c.ClientID(), 1)
			members = append(members, member{g, c})
		}
	}
	plain := v5(t, srv, uniqueID("plain"))
	plain.sub("jobs/+", 1)
	plain.sub("marker/plain", 1)

	pub := v5(t, srv, uniqueID("sharepub"))
	for i := 0; i < n; i++ {
		pub.pub("jobs/x", 1, fmt.Sprint(i))
	}
	// Every member's marker comes after every message delivered to it.
	for _, m := range members {
		pub.pub("marker/"+m.c.c.ClientID(), 1, "marker")
	}
	perGroup := map[string][]string{}
	for _, m := range members {
		got := payloads(m.c.until("marker/" + m.c.c.ClientID()))
		if len(got) == 0 {
			t.Errorf("member %s of %s got no message: load is not shared", m.c.c.ClientID(), m.group)
		}
		perGroup[m.group] = append(perGroup[m.group], got...)
	}
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprint(i))
	}
	sort.Strings(want)
	for g, got := range perGroup {
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("group %s received %v, want each of %d messages exactly once", g, got, n)
		}
	}
	// A non-shared subscriber of the same filter still gets everything, in order.
	pub.pub("marker/plain", 1, "marker")
	if got := payloads(plain.until("marker/plain")); !slices.Equal(got, wantInOrder(n)) {
		t.Errorf("plain subscriber received %v", got)
	}
}

func wantInOrder(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}
