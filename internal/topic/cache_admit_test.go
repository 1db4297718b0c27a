package topic

import (
	"hash/maphash"
	"strconv"
	"testing"
)

// putTopic offers a result for topic to c at the current counters, as Match does after a miss.
func putTopic(c *cache[int, int], topic string, r *Result[int, int]) {
	s1, s2 := c.gens.prefixSlots(topic)
	c.put(topic, maphash.String(c.seed, topic), s1, s2, c.gens.stamp(s1, s2), r)
}

func cached(c *cache[int, int], topic string) bool {
	r, _ := c.get(topic)
	return r != nil
}

// TestCacheAdmission: once the cache is full of live results, a topic seen once does not take a
// live result's slot (but for the doorkeeper's rare false positives), and a topic missed again
// within the window does.
func TestCacheAdmission(t *testing.T) {
	const topics = 64
	c := newCache[int, int](topics, 1<<20)
	r := &Result[int, int]{Entries: []Entry[int, int]{{Key: 1}}}
	for i := 0; ; i++ {
		if i == 100_000 {
			t.Fatal("could not fill the cache")
		}
		if n, _, _ := c.stats(); n == topics {
			break
		}
		tp := "fill/" + strconv.Itoa(i)
		for range 3 { // admitted by its third miss at the latest (one clearing may come between)
			putTopic(c, tp, r)
		}
	}
	const oneOff = 1000
	admitted := 0
	for i := range oneOff {
		tp := "once/" + strconv.Itoa(i)
		putTopic(c, tp, r)
		if cached(c, tp) {
			admitted++
		}
	}
	if admitted > oneOff/4 {
		t.Errorf("%d of %d topics seen once took a live result's slot", admitted, oneOff)
	}
	tp := "again/x"
	for range 3 {
		putTopic(c, tp, r)
	}
	if !cached(c, tp) {
		t.Error("a topic missed three times in a row is not cached")
	}
	if n, w, counter := c.stats(); n != topics || w != counter {
		t.Errorf("cache holds %d topics weighing %d (counter %d)", n, w, counter)
	}
}
