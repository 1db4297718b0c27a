package cluster

import (
	"fmt"
	"testing"
)

// bootNodes are stateless nodes n1..nk listed alike, their votes exchanged by ask.
type bootNodes []*bootState

func newBootNodes(k int) bootNodes {
	var join []string
	for i := 1; i <= k; i++ {
		join = append(join, fmt.Sprintf("a%d", i))
	}
	bs := make(bootNodes, k)
	for i := range bs {
		bs[i] = &bootState{}
		bs[i].init(fmt.Sprintf("n%d", i+1), join[i], join)
	}
	return bs
}

// ask: node i asks node j to join and takes its answer (1-based, as the ids).
func (bs bootNodes) ask(i, j int) {
	bs[i-1].answer(noClusterError{bs[j-1].hear(bs[i-1].self)})
}

// round: every pair that can talk (ok) asks each other, then each node checks whether it is
// elected; it returns the elected nodes.
func (bs bootNodes) round(ok func(i, j int) bool) (elected []int) {
	for i := 1; i <= len(bs); i++ {
		for j := 1; j <= len(bs); j++ {
			if i != j && ok(i, j) {
				bs.ask(i, j)
			}
		}
	}
	for i := 1; i <= len(bs); i++ {
		if bs[i-1].elected() {
			elected = append(elected, i)
		}
	}
	return elected
}

func (bs bootNodes) votes() []string {
	var v []string
	for _, b := range bs {
		v = append(v, b.vote)
	}
	return v
}

// The bootstrap votes of three stateless nodes listed alike, where n1 cannot reach n2: n3 is
// asked by n2 first and votes n2 for good, so n1 (which also reaches a majority, itself and n3)
// is not elected, and n2 is. Without the fixed vote both would start a cluster.
func TestBootstrapVotesElectOne(t *testing.T) {
	bs := newBootNodes(3)
	bs.ask(2, 3) // n3 heard of two of three: it votes n2
	bs.ask(1, 3) // the vote stays n2
	if bs[0].elected() {
		t.Fatal("n1 elected with only its own vote")
	}
	if !bs[1].elected() {
		t.Fatal("n2 not elected with its own vote and n3's")
	}
	if bs[2].elected() {
		t.Fatal("n3 elected")
	}
	// n1 learns of n3's vote for n2 but n2 has started: n2 never withdraws, n1 never starts.
	bs.ask(1, 3)
	bs.ask(2, 1)
	if bs[0].elected() || !bs[1].elected() || bs[1].withdrawn {
		t.Fatalf("after more answers: n1 %v, n2 %v withdrawn %v", bs[0].elected(), bs[1].elected(), bs[1].withdrawn)
	}
}

// splitViews shows five nodes partial views, one stage of reachability after another, that fix
// votes for good at n1 n1 n3 n3 n2: nobody has three of five, and with votes that never change
// nobody ever would (the in-process TestBootstrapFiveSplitViews stages the same views). It
// returns the nodes elected along the way.
func splitViews(t *testing.T, bs bootNodes) (elected []int) {
	t.Helper()
	type pair struct{ a, b int }
	var links []pair
	stage := func(add ...pair) {
		links = append(links, add...)
		ok := func(i, j int) bool {
			for _, l := range links {
				if l.a == i && l.b == j || l.a == j && l.b == i {
					return true
				}
			}
			return false
		}
		for range 3 {
			elected = append(elected, bs.round(ok)...)
		}
	}
	stage(pair{3, 4}, pair{3, 5})             // n3 hears n4, n5: votes n3
	stage(pair{2, 5}, pair{1, 2})             // n5 hears n2 (votes n2), n2 hears n1 and n5 (votes n1)
	stage(pair{4, 5})                         // n4 hears n5: votes n3
	stage(pair{1, 3}, pair{1, 4}, pair{1, 5}) // n1 hears a majority: votes n1
	return elected
}

// Five nodes whose partial views split the votes (n1 n1 n3 n3 n2): once they all reach each
// other, the nodes with a lower node's vote in sight withdraw, their voters vote again, and
// exactly one node (n1) is elected. With votes fixed for good nobody ever was.
func TestBootstrapSplitVotesConverge(t *testing.T) {
	bs := newBootNodes(5)
	elected := splitViews(t, bs)
	all := func(i, j int) bool { return true }
	for range 5 {
		elected = append(elected, bs.round(all)...)
	}
	seen := map[int]bool{}
	for _, e := range elected {
		seen[e] = true
	}
	if len(seen) != 1 || !seen[1] {
		t.Fatalf("elected: %v (votes %v), want n1 alone", elected, bs.votes())
	}
}

// Safety under any order: random reachability and random order of answers over many rounds
// never elect two nodes; with everybody reachable at the end, one is elected.
func TestBootstrapNeverTwo(t *testing.T) {
	for seed := range 300 {
		rnd := uint64(seed)*2654435761 + 1
		next := func(n int) int {
			rnd ^= rnd << 13
			rnd ^= rnd >> 7
			rnd ^= rnd << 17
			return int(rnd % uint64(n))
		}
		k := 3 + seed%5
		bs := newBootNodes(k)
		elected := map[int]bool{}
		for range 40 {
			i, j := 1+next(k), 1+next(k)
			if i != j {
				bs.ask(i, j)
			}
			if c := 1 + next(k); bs[c-1].elected() {
				elected[c] = true
			}
		}
		for range 2 * k {
			for _, e := range bs.round(func(i, j int) bool { return true }) {
				elected[e] = true
			}
		}
		if len(elected) != 1 {
			t.Fatalf("seed %d, %d nodes: elected %v (votes %v)", seed, k, elected, bs.votes())
		}
	}
}

// A boot answer travels as a field of the join reply.
func TestReplyBootRoundTrip(t *testing.T) {
	for _, in := range []*bootInfo{nil, {Node: "n3"}, {Node: "n3", Vote: "n2"}, {Node: "n4", Vote: "n1", Withdrawn: true}} {
		f, err := decodeFrame(appendReplyBoot(nil, 5, 0, "", "x", in)[4:])
		if err != nil {
			t.Fatal(err)
		}
		if (in == nil) != (f.Boot == nil) || in != nil && *in != *f.Boot {
			t.Fatalf("boot answer %+v came back %+v", in, f.Boot)
		}
	}
	b := appendReplyBoot(nil, 5, 0, "", "x", &bootInfo{Node: "n3"})
	// A reply without one is byte for byte the reply of a node that does not know the field.
	if got, want := appendReplyBoot(nil, 5, 7, "l", "x", nil), appendReply(nil, 5, 7, "l", "x"); string(got) != string(want) {
		t.Fatal("a reply without a boot answer changed")
	}
	for _, flags := range []byte{0, replyWithdrawn, 4, 0x81} {
		c := append([]byte{}, b...)
		c[len(c)-5] = flags // the flags byte before str "n3" and str ""
		if _, err := decodeFrame(c[4:]); err == nil {
			t.Fatalf("boot flags %#x decoded", flags)
		}
	}
}
