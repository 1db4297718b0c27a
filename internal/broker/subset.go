package broker

import "iter"

// subSetSmall is how many subscriptions a session keeps in a slice before it builds a map.
const subSetSmall = 8

// subSet is a session's subscriptions by filter. Most sessions have one or a few: up to
// subSetSmall of them live in a slice, searched in order (one pointer each), and only a session
// with more pays for a map, whose smallest form with one entry costs 256 bytes, more than the rest
// of an idle session's subscription. The zero value is empty.
type subSet struct {
	few  []*subscription
	many map[string]*subscription
}

func (ss *subSet) len() int {
	if ss.many != nil {
		return len(ss.many)
	}
	return len(ss.few)
}

// get returns the subscription to filter f, or nil.
func (ss *subSet) get(f string) *subscription {
	if ss.many != nil {
		return ss.many[f]
	}
	for _, sub := range ss.few {
		if sub.Filter == f {
			return sub
		}
	}
	return nil
}

// put adds sub, replacing the subscription to the same filter.
func (ss *subSet) put(sub *subscription) {
	if ss.many != nil {
		ss.many[sub.Filter] = sub
		return
	}
	for i, old := range ss.few {
		if old.Filter == sub.Filter {
			ss.few[i] = sub
			return
		}
	}
	if len(ss.few) < subSetSmall {
		ss.few = append(ss.few, sub)
		return
	}
	ss.many = make(map[string]*subscription, 2*subSetSmall)
	for _, old := range ss.few {
		ss.many[old.Filter] = old
	}
	ss.many[sub.Filter] = sub
	ss.few = nil
}

// remove takes out the subscription to filter f and returns it (nil: there was none).
func (ss *subSet) remove(f string) *subscription {
	if ss.many != nil {
		sub := ss.many[f]
		delete(ss.many, f)
		return sub
	}
	for i, sub := range ss.few {
		if sub.Filter == f {
			last := len(ss.few) - 1
			ss.few[i] = ss.few[last]
			ss.few[last] = nil
			ss.few = ss.few[:last]
			if last == 0 {
				ss.few = nil
			}
			return sub
		}
	}
	return nil
}

// all yields every subscription, in no particular order; the set must not change meanwhile.
func (ss *subSet) all() iter.Seq[*subscription] {
	return func(yield func(*subscription) bool) {
		if ss.many != nil {
			for _, sub := range ss.many {
				if !yield(sub) {
					return
				}
			}
			return
		}
		for _, sub := range ss.few {
			if !yield(sub) {
				return
			}
		}
	}
}

// clear empties the set.
func (ss *subSet) clear() { *ss = subSet{} }
