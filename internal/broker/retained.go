package broker

import (
	"strings"
	"sync"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// retainedIndex holds the retained message of each topic in a tree of topic levels, so a
// subscribe finds the messages its filter matches by walking only the branches it can match.
type retainedIndex struct {
	mu   sync.RWMutex
	root rnode
	n    int
}

type rnode struct {
	children map[string]*rnode
	msg      *message.Message
}

func newRetainedIndex() *retainedIndex { return &retainedIndex{} }

func (r *retainedIndex) load(st store.Retained) error {
	return st.All(func(m *message.Message) error {
		r.set(m)
		return nil
	})
}

func (r *retainedIndex) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// set stores m under its topic; it reports whether the topic had no retained message before.
func (r *retainedIndex) set(m *message.Message) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := &r.root
	for level, rest, more := cutLevel(m.Topic); ; level, rest, more = cutLevel(rest) {
		child := n.children[level]
		if child == nil {
			if n.children == nil {
				n.children = map[string]*rnode{}
			}
			child = &rnode{}
			n.children[level] = child
		}
		n = child
		if !more {
			break
		}
	}
	added := n.msg == nil
	n.msg = m
	if added {
		r.n++
	}
	return added
}

// delete clears the topic's retained message and prunes empty branches; it reports whether there
// was one.
func (r *retainedIndex) delete(topic string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var path []*rnode
	var keys []string
	n := &r.root
	for level, rest, more := cutLevel(topic); ; level, rest, more = cutLevel(rest) {
		child := n.children[level]
		if child == nil {
			return false
		}
		path = append(path, n)
		keys = append(keys, level)
		n = child
		if !more {
			break
		}
	}
	if n.msg == nil {
		return false
	}
	n.msg = nil
	r.n--
	for i := len(path) - 1; i >= 0 && n.msg == nil && len(n.children) == 0; i-- {
		delete(path[i].children, keys[i])
		n = path[i]
	}
	return true
}

// match returns the retained messages whose topics the filter (without any $share prefix) matches.
func (r *retainedIndex) match(filter string) []*message.Message {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*message.Message
	matchNode(&r.root, filter, true, &out)
	return out
}

func matchNode(n *rnode, filter string, first bool, out *[]*message.Message) {
	level, rest, more := cutLevel(filter)
	switch level {
	case "#":
		// "#" also matches the parent level itself ("a/#" matches "a").
		if !first && n.msg != nil {
			*out = append(*out, n.msg)
		}
		collect(n, first, out)
	case "+":
		for name, child := range n.children {
			if first && strings.HasPrefix(name, "$") {
				continue
			}
			matchChild(child, rest, more, out)
		}
	default:
		if child := n.children[level]; child != nil {
			matchChild(child, rest, more, out)
		}
	}
}

func matchChild(child *rnode, rest string, more bool, out *[]*message.Message) {
	if !more {
		if child.msg != nil {
			*out = append(*out, child.msg)
		}
		return
	}
	matchNode(child, rest, false, out)
}

// collect appends every message below n; at the top level, $-topics are left out.
func collect(n *rnode, first bool, out *[]*message.Message) {
	for name, child := range n.children {
		if first && strings.HasPrefix(name, "$") {
			continue
		}
		if child.msg != nil {
			*out = append(*out, child.msg)
		}
		collect(child, false, out)
	}
}

// cutLevel splits off the first topic level.
func cutLevel(s string) (level, rest string, more bool) {
	return strings.Cut(s, "/")
}
