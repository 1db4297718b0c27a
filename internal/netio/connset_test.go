package netio

import (
	"math/rand/v2"
	"testing"
)

// connSet behaves as a set through growth, removal from anywhere in a probe run, and shrinking
// (checked against a map after every step).
func TestConnSetLikeAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pool := make([]*int, 5000)
	for i := range pool {
		pool[i] = new(int)
	}
	var s connSet[*int]
	ref := map[*int]bool{}
	check := func(step int) {
		t.Helper()
		if s.len() != len(ref) {
			t.Fatalf("step %d: len %d, want %d", step, s.len(), len(ref))
		}
		got := s.appendTo(nil)
		seen := make(map[*int]bool, len(got))
		for _, c := range got {
			if seen[c] {
				t.Fatalf("step %d: an entry listed twice", step)
			}
			seen[c] = true
		}
		if len(got) != len(ref) {
			t.Fatalf("step %d: %d entries listed for %d", step, len(got), len(ref))
		}
		for _, c := range got {
			if !ref[c] {
				t.Fatalf("step %d: listed an entry that was removed", step)
			}
		}
	}
	// Fill past several doublings, churn, then empty it again past several halvings.
	for step := range 40000 {
		c := pool[rng.IntN(len(pool))]
		adding := step < 15000 || step >= 15000 && step < 25000 && rng.IntN(2) == 0
		if adding {
			if got := s.add(c); got == ref[c] {
				t.Fatalf("step %d: add reported %v for an entry present=%v", step, got, ref[c])
			}
			ref[c] = true
		} else {
			if got := s.remove(c); got != ref[c] {
				t.Fatalf("step %d: remove reported %v for an entry present=%v", step, got, ref[c])
			}
			delete(ref, c)
		}
		if step%97 == 0 {
			check(step)
		}
	}
	for c := range ref {
		if !s.remove(c) {
			t.Fatal("an entry added was not found to remove")
		}
		delete(ref, c)
	}
	check(-1)
	if len(s.slots) != minConnSet {
		t.Fatalf("an emptied set keeps %d slots", len(s.slots))
	}
}
