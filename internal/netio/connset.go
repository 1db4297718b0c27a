package netio

import "hash/maphash"

// connSet is a set of connections: an open-addressing table of the values themselves, probed
// linearly, with removal by backward shift (no tombstones). A Go map of pointers to empty
// structs takes about thirty bytes per entry here; this takes eight per slot, about fourteen per
// entry at the loads it keeps (3/8 to 3/4), and a registry holds one entry per open connection.
// The zero C marks an empty slot: it is never added. Not safe for concurrent use.
type connSet[C comparable] struct {
	slots []C
	n     int
	seed  maphash.Seed
}

// minConnSet is the smallest table; a set never shrinks below it.
const minConnSet = 64

func (s *connSet[C]) len() int { return s.n }

// home is where c's probe sequence starts.
func (s *connSet[C]) home(c C) int {
	return int(maphash.Comparable(s.seed, c) & uint64(len(s.slots)-1))
}

// add puts c in the set; it reports whether c was not there.
func (s *connSet[C]) add(c C) bool {
	if len(s.slots) == 0 {
		s.seed = maphash.MakeSeed()
		s.slots = make([]C, minConnSet)
	} else if (s.n+1)*4 > len(s.slots)*3 {
		s.resize(2 * len(s.slots))
	}
	var zero C
	mask := len(s.slots) - 1
	for i := s.home(c); ; i = (i + 1) & mask {
		switch s.slots[i] {
		case zero:
			s.slots[i] = c
			s.n++
			return true
		case c:
			return false
		}
	}
}

// remove takes c out of the set; it reports whether c was there.
func (s *connSet[C]) remove(c C) bool {
	if s.n == 0 {
		return false
	}
	var zero C
	mask := len(s.slots) - 1
	i := s.home(c)
	for s.slots[i] != c {
		if s.slots[i] == zero {
			return false
		}
		i = (i + 1) & mask
	}
	// Close the gap: an entry further along the run moves into it when the gap lies on its
	// probe sequence (between its home and where it is), so every entry stays reachable.
	for j := (i + 1) & mask; s.slots[j] != zero; j = (j + 1) & mask {
		h := s.home(s.slots[j])
		if (i-h)&mask < (j-h)&mask {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = zero
	s.n--
	if len(s.slots) > minConnSet && s.n*8 < len(s.slots) {
		s.resize(len(s.slots) / 2) // give back the table of a crowd that left
	}
	return true
}

// resize moves the entries to a table of size slots (a power of two).
func (s *connSet[C]) resize(size int) {
	old := s.slots
	s.slots = make([]C, size)
	var zero C
	mask := size - 1
	for _, c := range old {
		if c == zero {
			continue
		}
		i := s.home(c)
		for s.slots[i] != zero {
			i = (i + 1) & mask
		}
		s.slots[i] = c
	}
}

// appendTo appends every entry to out, in no particular order.
func (s *connSet[C]) appendTo(out []C) []C {
	var zero C
	for _, c := range s.slots {
		if c != zero {
			out = append(out, c)
		}
	}
	return out
}
