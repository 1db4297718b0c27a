//go:build unix

package main

import (
	"strings"
	"testing"
	"time"

	topics "github.com/ternmq/tern/internal/topic"
)

// Every published topic matches its own filter and no other, whether that filter is in place
// or one a churner adds, so each message has exactly one subscriber and churn does not change
// what is delivered.
func TestTopicMatchesOnlyItsFilter(t *testing.T) {
	const n = 1200 // beyond 1000: the site/<i%1000>/floor filters repeat their second level
	filters := make([]string, 0, n+200)
	for j := 0; j < n; j++ {
		filters = append(filters, filter(j))
	}
	for j := 0; j < 200; j++ {
		filters = append(filters, filter(churnID(n, 4, j%4, j/4)))
	}
	for i := 0; i < n; i++ {
		tp := topic(i)
		for j, f := range filters {
			if got, want := topics.Match(f, tp), j == i; got != want {
				t.Fatalf("Match(%q, %q) = %v", f, tp, got)
			}
		}
	}
}

// target sends consecutive messages to consecutive connections and reaches every filter once
// per conns*per messages.
func TestTargetRoundRobin(t *testing.T) {
	const conns, per = 3, 4
	seen := map[int]bool{}
	for seq := 0; seq < conns*per; seq++ {
		i := target(seq, conns, per)
		if c := i / per; c != seq%conns {
			t.Fatalf("message %d to connection %d, want %d", seq, c, seq%conns)
		}
		if seen[i] {
			t.Fatalf("filter %d twice in one round", i)
		}
		seen[i] = true
	}
}

func TestChurnIDsAreFreshAndDistinct(t *testing.T) {
	const n, churners = 100, 3
	seen := map[int]bool{}
	for k := 0; k < churners; k++ {
		for j := 0; j < 50; j++ {
			id := churnID(n, churners, k, j)
			if id < n || seen[id] {
				t.Fatalf("churner %d filter %d: id %d in place or taken", k, j, id)
			}
			seen[id] = true
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--conns", "2", "--filters", "3", "--churn", "5s", "--churn-conns", "0"})
	if err != nil || o.conns != 2 || o.per != 3 || o.churn != 5*time.Second || o.churnConns != 0 || o.window != 1000 {
		t.Fatalf("%+v %v", o, err)
	}
	for _, args := range [][]string{
		{"--conns", "0"},
		{"--filters", "-1"},
		{"--churn", "-1s"},
		{"--churn", "1s", "--churn-batch", "0"},
		{"--churn", "1s", "--window", "0"},
		{"--churn", "1s", "--churn-conns", "-1"},
		{"--churn", "1s", "--rate", "-5"},
		{"extra"},
		{"--nope"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%s: no error", strings.Join(args, " "))
		}
	}
}
