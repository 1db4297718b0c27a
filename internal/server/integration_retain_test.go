package server_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// retainedOnSubscribe subscribes c with opts and returns the messages that arrive before a marker
// the client publishes to itself right after the SUBACK. The server handles one connection's
// packets in order, so every retained message the subscribe sends comes before the marker.
func retainedOnSubscribe(c *v5Client, marker string, opts paho.SubscribeOptions) []*paho.Publish {
	c.t.Helper()
	c.subscribe(opts)
	c.pub(marker, 1, "marker")
	return c.until(marker)
}

// TestRetainedMessages: a retained message is delivered on subscribe with the retain flag, a newer
// one replaces it, an empty payload clears it; live deliveries carry no retain flag.
func TestRetainedMessages(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	pub := v5(t, srv, uniqueID("rpub"))
	pub.publish(&paho.Publish{Topic: "r/1", QoS: 1, Retain: true, Payload: []byte("v1")})
	pub.publish(&paho.Publish{Topic: "r/2", QoS: 0, Retain: true, Payload: []byte("other")})

	s1 := v5(t, srv, uniqueID("rsub"))
	s1.sub("$m/s1", 1)
	got := retainedOnSubscribe(s1, "$m/s1", paho.SubscribeOptions{Topic: "r/1", QoS: 1})
	if len(got) != 1 || string(got[0].Payload) != "v1" || !got[0].Retain {
		t.Fatalf("on subscribe got %s, want v1 with the retain flag", describe(got))
	}
	if got[0].QoS != 1 {
		t.Errorf("retained QoS 1 message delivered at QoS %d", got[0].QoS)
	}

	// Replace: the live delivery to s1 is not flagged retained; a new subscriber gets v2.
	pub.publish(&paho.Publish{Topic: "r/1", QoS: 1, Retain: true, Payload: []byte("v2")})
	if m := s1.expect("r/1", "v2"); m.Retain {
		t.Error("live delivery of a retained publish kept the retain flag (retain as published is off)")
	}
	s2 := v5(t, srv, uniqueID("rsub"))
	s2.sub("$m/s2", 1)
	got = retainedOnSubscribe(s2, "$m/s2", paho.SubscribeOptions{Topic: "r/#", QoS: 1})
	byTopic := map[string]string{}
	for _, m := range got {
		if !m.Retain {
			t.Errorf("retained %s delivered without the retain flag", m.Topic)
		}
		byTopic[m.Topic] = string(m.Payload)
	}
	if len(got) != 2 || byTopic["r/1"] != "v2" || byTopic["r/2"] != "other" {
		t.Fatalf("wildcard subscribe got %s, want r/1=v2 and r/2=other", describe(got))
	}

	// Clear with an empty payload: the subscriber still gets the empty message live, but later
	// subscribers get nothing for r/1.
	pub.publish(&paho.Publish{Topic: "r/1", QoS: 1, Retain: true, Payload: nil})
	s3 := v5(t, srv, uniqueID("rsub"))
	s3.sub("$m/s3", 1)
	got = retainedOnSubscribe(s3, "$m/s3", paho.SubscribeOptions{Topic: "r/#", QoS: 1})
	if len(got) != 1 || got[0].Topic != "r/2" {
		t.Fatalf("after clearing r/1, subscribe got %s, want only r/2", describe(got))
	}
	if n := metric(t, srv, "tern_retained_messages"); n != 1 {
		t.Errorf("tern_retained_messages = %v, want 1", n)
	}
}

// TestRetainHandling checks subscription option Retain Handling 0, 1 and 2.
func TestRetainHandling(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	pub := v5(t, srv, uniqueID("rhpub"))
	pub.publish(&paho.Publish{Topic: "rh/t", QoS: 1, Retain: true, Payload: []byte("kept")})

	count := func(c *v5Client, marker string, rh byte) int {
		t.Helper()
		got := retainedOnSubscribe(c, marker, paho.SubscribeOptions{Topic: "rh/t", QoS: 1, RetainHandling: rh})
		for _, m := range got {
			if m.Topic != "rh/t" || string(m.Payload) != "kept" || !m.Retain {
				t.Fatalf("unexpected delivery %s", describe(got))
			}
		}
		return len(got)
	}

	c0 := v5(t, srv, uniqueID("rh0"))
	c0.sub("$m/0", 1)
	if n := count(c0, "$m/0", 0); n != 1 {
		t.Errorf("retain handling 0, new subscription: %d retained messages, want 1", n)
	}
	if n := count(c0, "$m/0", 0); n != 1 {
		t.Errorf("retain handling 0, existing subscription: %d retained messages, want 1", n)
	}

	c1 := v5(t, srv, uniqueID("rh1"))
	c1.sub("$m/1", 1)
	if n := count(c1, "$m/1", 1); n != 1 {
		t.Errorf("retain handling 1, new subscription: %d retained messages, want 1", n)
	}
	if n := count(c1, "$m/1", 1); n != 0 {
		t.Errorf("retain handling 1, resubscribe of an existing subscription: %d retained messages, want 0", n)
	}

	c2 := v5(t, srv, uniqueID("rh2"))
	c2.sub("$m/2", 1)
	if n := count(c2, "$m/2", 2); n != 0 {
		t.Errorf("retain handling 2: %d retained messages, want 0", n)
	}
}

// TestRetainAsPublished: a live retained publish keeps its retain flag only for subscriptions with
// Retain As Published.
func TestRetainAsPublished(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	rap := v5(t, srv, uniqueID("rap"))
	rap.subscribe(paho.SubscribeOptions{Topic: "rap/t", QoS: 1, RetainAsPublished: true})
	plain := v5(t, srv, uniqueID("norap"))
	plain.subscribe(paho.SubscribeOptions{Topic: "rap/t", QoS: 1})

	pub := v5(t, srv, uniqueID("rappub"))
	pub.publish(&paho.Publish{Topic: "rap/t", QoS: 1, Retain: true, Payload: []byte("r")})
	pub.publish(&paho.Publish{Topic: "rap/t", QoS: 1, Retain: false, Payload: []byte("n")})
	if m := rap.expect("rap/t", "r"); !m.Retain {
		t.Error("retain-as-published subscriber got the retained publish without the retain flag")
	}
	if m := rap.expect("rap/t", "n"); m.Retain {
		t.Error("retain-as-published subscriber got a non-retained publish with the retain flag")
	}
	if m := plain.expect("rap/t", "r"); m.Retain {
		t.Error("plain subscriber got a live retained publish with the retain flag")
	}
	plain.expect("rap/t", "n")
	// Retained messages sent because of a subscribe are always flagged, with or without RAP.
	late := v5(t, srv, uniqueID("raplate"))
	late.sub("$m/late", 1)
	got := retainedOnSubscribe(late, "$m/late", paho.SubscribeOptions{Topic: "rap/t", QoS: 1})
	if len(got) != 1 || !got[0].Retain {
		t.Errorf("subscribe after the retained publish got %s, want one retained message", describe(got))
	}
}

// TestRetainedWildcardsAndShared: "a/#" gets the retained message of "a" itself, "#" leaves out
// $-topics, and a shared subscription gets no retained messages on subscribe.
func TestRetainedWildcardsAndShared(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	pub := v5(t, srv, uniqueID("rwpub"))
	for _, topic := range []string{"rw", "rw/x", "rw/x/y", "$rw/sys"} {
		pub.publish(&paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(topic)})
	}
	cases := []struct {
		filter string
		want   []string
	}{
		{"rw/#", []string{"rw", "rw/x", "rw/x/y"}},
		{"rw/+", []string{"rw/x"}},
		{"+/x/#", []string{"rw/x", "rw/x/y"}},
		{"$rw/#", []string{"$rw/sys"}},
		{"$share/g/rw/#", nil},
	}
	for i, c := range cases {
		s := v5(t, srv, uniqueID("rw"))
		marker := fmt.Sprintf("$m/%d", i)
		s.sub(marker, 1)
		var got []string
		for _, m := range retainedOnSubscribe(s, marker, paho.SubscribeOptions{Topic: c.filter, QoS: 1}) {
			got = append(got, m.Topic)
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("subscribe %q: retained %q, want %q", c.filter, got, c.want)
		}
	}
	// "#" must not return $-topics, but the test's own markers are $-topics too, so use a client
	// that collects until its marker under a normal topic.
	all := v5(t, srv, uniqueID("rwall"))
	all.sub("zz/marker", 1)
	var got []string
	for _, m := range retainedOnSubscribe(all, "zz/marker", paho.SubscribeOptions{Topic: "#", QoS: 1}) {
		got = append(got, m.Topic)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"rw", "rw/x", "rw/x/y"}) {
		t.Errorf("subscribe \"#\": retained %q, want the three non-$ topics", got)
	}
}
