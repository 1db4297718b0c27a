package broker

import "iter"

// subSetSmall is how many subscriptions a session keeps in a slice before it builds a map.
const subSetSmall = 8

// subSet is a session's subscriptions by filter. Most sessions have exactly one (a device
// subscribed to its own topic): it is held by a pointer in the session, with nothing else
// allocated, and the set takes two words of the session rather than four. A session with more
// moves them to a subList. The zero value is empty.
type subSet struct {
	one  *subscription // the only subscription; nil when there is none or more than one
	more *subList      // two or more; nil otherwise
}

// subList holds the subscriptions of a session with two or more: up to subSetSmall of them in
// a slice, searched in order (one pointer each), and past that a map, whose smallest form with
// one entry costs 256 bytes.
type subList struct {
	few  []*subscription
	many map[string]*subscription
}

func (ss *subSet) len() int {
	switch {
	case ss.more != nil:
		return ss.more.len()
	case ss.one != nil:
		return 1
	}
	return 0
}

// get returns the subscription to filter f, or nil.
func (ss *subSet) get(f string) *subscription {
	if ss.more != nil {
		return ss.more.get(f)
	}
	if ss.one != nil && ss.one.Filter == f {
		return ss.one
	}
	return nil
}

// put adds sub, replacing the subscription to the same filter.
func (ss *subSet) put(sub *subscription) {
	switch {
	case ss.more != nil:
		ss.more.put(sub)
	case ss.one == nil || ss.one.Filter == sub.Filter:
		ss.one = sub
	default:
		ss.more = &subList{few: []*subscription{ss.one, sub}}
		ss.one = nil
	}
}

// remove takes out the subscription to filter f and returns it (nil: there was none).
func (ss *subSet) remove(f string) *subscription {
	if ss.more == nil {
		sub := ss.one
		if sub == nil || sub.Filter != f {
			return nil
		}
		ss.one = nil
		return sub
	}
	sub := ss.more.remove(f)
	if ss.more.len() == 1 {
		for last := range ss.more.all() {
			ss.one = last
		}
		ss.more = nil
	}
	return sub
}

// all yields every subscription, in no particular order; the set must not change meanwhile.
func (ss *subSet) all() iter.Seq[*subscription] {
	if ss.more != nil {
		return ss.more.all()
	}
	return func(yield func(*subscription) bool) {
		if ss.one != nil {
			yield(ss.one)
		}
	}
}

// clear empties the set.
func (ss *subSet) clear() { *ss = subSet{} }

func (sl *subList) len() int {
	if sl.many != nil {
		return len(sl.many)
	}
	return len(sl.few)
}

func (sl *subList) get(f string) *subscription {
	if sl.many != nil {
		return sl.many[f]
	}
	for _, sub := range sl.few {
		if sub.Filter == f {
			return sub
		}
	}
	return nil
}

func (sl *subList) put(sub *subscription) {
	if sl.many != nil {
		sl.many[sub.Filter] = sub
		return
	}
	for i, old := range sl.few {
		if old.Filter == sub.Filter {
			sl.few[i] = sub
			return
		}
	}
	if len(sl.few) < subSetSmall {
		sl.few = append(sl.few, sub)
		return
	}
	sl.many = make(map[string]*subscription, 2*subSetSmall)
	for _, old := range sl.few {
		sl.many[old.Filter] = old
	}
	sl.many[sub.Filter] = sub
	sl.few = nil
}

func (sl *subList) remove(f string) *subscription {
	if sl.many != nil {
		sub := sl.many[f]
		delete(sl.many, f)
		return sub
	}
	for i, sub := range sl.few {
		if sub.Filter == f {
			last := len(sl.few) - 1
			sl.few[i] = sl.few[last]
			sl.few[last] = nil
			sl.few = sl.few[:last]
			return sub
		}
	}
	return nil
}

func (sl *subList) all() iter.Seq[*subscription] {
	return func(yield func(*subscription) bool) {
		if sl.many != nil {
			for _, sub := range sl.many {
				if !yield(sub) {
					return
				}
			}
			return
		}
		for _, sub := range sl.few {
			if !yield(sub) {
				return
			}
		}
	}
}
