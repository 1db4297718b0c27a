package uplink

import (
	"slices"
	"strings"
)

// Down: the site subscribes upstream, in its one session at the designated router, to what its
// own sessions subscribe to within the link's namespaces. A local filter is mapped into each
// namespace it can match there:
//
//	#          -> <ns>/#  (# matches the namespace's level itself too)
//	+/x        -> <ns>/x
//	+          -> <ns>
//	<ns>/a/+   -> <ns>/a/+
//	other/...  -> nothing (another namespace)
//	$SYS/...   -> nothing ('$' topics are the broker's own; a leading wildcard never matches them)
//
// Shared subscriptions arrive here without their $share/<group>/ prefix (broker.Interest), so
// $share/g/f goes up as f.

// mapFilter returns the upstream filter of local filter f in namespace ns, if it has one.
func mapFilter(f, ns string) (string, bool) {
	first, rest, more := strings.Cut(f, "/")
	switch first {
	case "#":
		return ns + "/#", true
	case "+", ns:
		if !more {
			return ns, true
		}
		return ns + "/" + rest, true
	}
	return "", false
}

// mapInterest maps every local filter into every namespace and returns the distinct upstream
// filters, sorted. When <ns>/# is among them, the namespace's other filters are left out: it
// covers them, and the designated router delivers each message once per session anyway.
func mapInterest(interest, namespaces []string) []string {
	var out []string
	for _, ns := range namespaces {
		var mine []string
		all := false
		for _, f := range interest {
			up, ok := mapFilter(f, ns)
			if !ok {
				continue
			}
			if up == ns+"/#" {
				all = true
				break
			}
			mine = append(mine, up)
		}
		if all {
			mine = []string{ns + "/#"}
		}
		out = append(out, mine...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
