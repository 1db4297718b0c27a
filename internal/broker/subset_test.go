package broker

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ternmq/tern/internal/store"
)

// subSet must behave like the map it replaced on both sides of subSetSmall: put replaces the
// same filter, remove takes out exactly one, all yields each once.
func TestSubSetLikeAMap(t *testing.T) {
	for _, n := range []int{1, 2, 3, subSetSmall - 1, subSetSmall, subSetSmall + 1, 3 * subSetSmall} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var ss subSet
			ref := map[string]*subscription{}
			check := func(when string) {
				t.Helper()
				if ss.len() != len(ref) {
					t.Fatalf("%s: len %d, want %d", when, ss.len(), len(ref))
				}
				var got []string
				for sub := range ss.all() {
					got = append(got, sub.Filter)
					if ref[sub.Filter] != sub {
						t.Fatalf("%s: all yielded %q, not the one put", when, sub.Filter)
					}
				}
				if len(got) != len(ref) || len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(ref) {
					t.Fatalf("%s: all yielded %v for %d subscriptions", when, got, len(ref))
				}
				for f, sub := range ref {
					if ss.get(f) != sub {
						t.Fatalf("%s: get(%q) is not the one put", when, f)
					}
				}
				if ss.get("absent") != nil {
					t.Fatalf("%s: get of an absent filter", when)
				}
			}
			mk := func(f string) *subscription { return &subscription{Subscription: store.Subscription{Filter: f}} }
			for i := range n {
				f := fmt.Sprintf("t/%d", i)
				ref[f] = mk(f)
				ss.put(ref[f])
			}
			check("filled")
			// A resubscribe replaces, whichever form the set has.
			ref["t/0"] = mk("t/0")
			ss.put(ref["t/0"])
			check("replaced")
			if ss.remove("absent") != nil {
				t.Fatal("remove of an absent filter returned something")
			}
			for i := 0; i < n; i += 2 {
				f := fmt.Sprintf("t/%d", i)
				if got := ss.remove(f); got != ref[f] {
					t.Fatalf("remove(%q) = %v", f, got)
				}
				delete(ref, f)
				check("after remove " + f)
			}
			for f := range ref {
				if got := ss.remove(f); got != ref[f] {
					t.Fatalf("remove(%q) = %v", f, got)
				}
				delete(ref, f)
				check("after remove " + f)
			}
			ref["again"] = mk("again")
			ss.put(ref["again"])
			check("refilled")
			ss.clear()
			clear(ref)
			check("cleared")
		})
	}
}

// A session's only subscription costs the set nothing beyond the subscription: a device
// subscribed to its own topic is most of a broker's sessions.
func TestSubSetOfOneAllocatesNothing(t *testing.T) {
	sub := &subscription{Subscription: store.Subscription{Filter: "devices/1"}}
	var ss subSet
	if n := testing.AllocsPerRun(100, func() {
		ss.put(sub)
		ss.remove(sub.Filter)
	}); n != 0 {
		t.Fatalf("putting and removing a session's only subscription allocated %.0f times", n)
	}
}

// A session with more subscriptions than subSetSmall still gets each filter's messages once,
// and stops getting those it unsubscribed.
func TestManySubscriptionsDeliver(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, k, _ := connect(t, b, ConnectRequest{ClientID: "c"})
	n := 2*subSetSmall + 3
	for i := range n {
		subscribe(t, c, SubscribeRequest{Filter: fmt.Sprintf("m/%d", i)})
	}
	// Resubscribing leaves one subscription per filter.
	subscribe(t, c, SubscribeRequest{Filter: "m/0"}, SubscribeRequest{Filter: fmt.Sprintf("m/%d", n-1)})
	if got := b.stats.Subscriptions.Load(); got != int64(n) {
		t.Fatalf("%d subscriptions counted, want %d", got, n)
	}
	if got := c.Unsubscribe([]string{"m/1", "m/1", "absent"}); !slices.Equal(got, []bool{true, false, false}) {
		t.Fatalf("unsubscribe = %v", got)
	}
	p, _, _ := connect(t, b, ConnectRequest{ClientID: "p"})
	var want []string
	for i := range n {
		publish(t, p, fmt.Sprintf("m/%d", i), fmt.Sprint(i), 0, false)
		if i != 1 {
			want = append(want, fmt.Sprint(i))
		}
	}
	wantPayloads(t, k, want...)
}
