package clock

import (
	"slices"
	"testing"
	"time"
)

func TestFakeRunsDueFunctionsInOrder(t *testing.T) {
	start := time.Unix(1000, 0)
	f := NewFake(start)
	var ran []string
	var at []time.Time
	record := func(name string) func() {
		return func() { ran = append(ran, name); at = append(at, f.Now()) }
	}
	f.AfterFunc(3*time.Second, record("c"))
	f.AfterFunc(time.Second, record("a"))
	stopped := f.AfterFunc(2*time.Second, record("stopped"))
	f.AfterFunc(2*time.Second, func() {
		ran = append(ran, "b")
		// A function may schedule another; it runs in the same Advance when due by its end.
		f.AfterFunc(500*time.Millisecond, record("b2"))
	})
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: want true once, then false")
	}
	f.Advance(2500 * time.Millisecond)
	if !slices.Equal(ran, []string{"a", "b", "b2"}) {
		t.Fatalf("ran %v", ran)
	}
	if !at[0].Equal(start.Add(time.Second)) || !at[1].Equal(start.Add(2500*time.Millisecond)) {
		t.Fatalf("functions saw the clock at %v", at)
	}
	if !f.Now().Equal(start.Add(2500*time.Millisecond)) || f.Pending() != 1 {
		t.Fatalf("now %v, pending %d", f.Now(), f.Pending())
	}
	f.Advance(time.Second)
	if ran[len(ran)-1] != "c" || f.Pending() != 0 {
		t.Fatalf("ran %v", ran)
	}
}
