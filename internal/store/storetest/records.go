package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ternmq/tern/internal/store"
)

func scanAll(t *testing.T, r store.Records, ns string) string {
	t.Helper()
	out := ""
	must(t, r.Scan(ns, func(k string, v []byte) error {
		out += fmt.Sprintf("%s=%s;", k, v)
		return nil
	}))
	return out
}

func testRecords(t *testing.T, open Opener) {
	st, reopen := open(t)
	r := st.Records()
	if _, ok, err := r.Get("users", "nobody"); ok || err != nil {
		t.Fatalf("missing key: ok=%v err=%v", ok, err)
	}
	must(t, r.Put("users", "bob", []byte("2")))
	must(t, r.Put("users", "alice", []byte("1")))
	must(t, r.Put("user", "alice", []byte("other namespace")))
	must(t, r.Put("userss", "a", []byte("x")))
	must(t, r.Put("users", "empty", nil))
	must(t, r.Put("users", "bob", []byte("3"))) // overwrite
	must(t, r.Delete("users", "missing"))

	if got := scanAll(t, r, "users"); got != "alice=1;bob=3;empty=;" {
		t.Fatalf("scan users = %q", got)
	}
	if got := scanAll(t, r, "user"); got != "alice=other namespace;" {
		t.Fatalf("scan user = %q: a namespace that prefixes another must not see it", got)
	}
	if v, ok, err := r.Get("users", "empty"); !ok || err != nil || len(v) != 0 {
		t.Fatalf("empty value: %q %v %v", v, ok, err)
	}
	// fn may write while scanning, and an error stops the scan and comes back.
	stop := errors.New("stop")
	n := 0
	err := r.Scan("users", func(k string, _ []byte) error {
		n++
		must(t, r.Put("users", k+"-copy", []byte("c")))
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("scan stopped after %d with %v", n, err)
	}
	must(t, r.Delete("users", "alice-copy"))
	must(t, r.Delete("users", "bob"))

	// A returned value is the caller's.
	v, _, _ := r.Get("users", "alice")
	v[0] = 'X'
	st = reopen()
	r = st.Records()
	if got := scanAll(t, r, "users"); got != "alice=1;empty=;" {
		t.Fatalf("after reopen: %q", got)
	}
}
