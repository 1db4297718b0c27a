package storetest

import (
	"reflect"
	"testing"

	"github.com/ternmq/tern/internal/store"
)

// testSubscriptions: subscriptions stored apart from their record, one per filter, come back
// with it; Put, PutSubscriptions and DeleteSubscriptions change only what they name.
func testSubscriptions(t *testing.T, open Opener) {
	st, reopen := open(t)
	ss := st.Sessions()
	subsOf := func(st store.Store, id string) []store.Subscription {
		t.Helper()
		rec, ok := records(t, st)[id]
		if !ok {
			t.Fatalf("session %q missing", id)
		}
		return rec.Subscriptions
	}
	want := func(st store.Store, id string, subs ...store.Subscription) {
		t.Helper()
		if got := subsOf(st, id); !reflect.DeepEqual(got, subs) && (len(got) != 0 || len(subs) != 0) {
			t.Fatalf("subscriptions of %q:\n got %+v\nwant %+v", id, got, subs)
		}
	}
	a0 := store.Subscription{Filter: "a/#", QoS: 0}
	a2 := store.Subscription{Filter: "a/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 1, ID: 7}
	b := store.Subscription{Filter: "b/+/c", QoS: 1, ID: 3}
	c := store.Subscription{Filter: "c", QoS: 1}

	must(t, ss.Put(store.SessionRecord{ClientID: "s", Expiry: 60}))
	must(t, ss.PutSubscriptions("s", []store.Subscription{a0, b}))
	// The same filter again replaces the subscription.
	must(t, ss.PutSubscriptions("s", []store.Subscription{a2}))
	want(st, "s", a2, b)

	// Deleting filters that are not stored, of a session with or without subscriptions, is no
	// error and changes nothing.
	must(t, ss.DeleteSubscriptions("s", []string{"nope", "a"}))
	must(t, ss.DeleteSubscriptions("nobody", []string{"a/#"}))
	want(st, "s", a2, b)

	// Put without subscriptions keeps those stored apart; with some, it adds or replaces them.
	must(t, ss.Put(store.SessionRecord{ClientID: "s", Expiry: 120, Dropped: 1}))
	want(st, "s", a2, b)
	must(t, ss.Put(store.SessionRecord{ClientID: "s", Expiry: 120, Dropped: 1, Subscriptions: []store.Subscription{a0, c}}))
	want(st, "s", a0, b, c)
	if r := records(t, st)["s"]; r.Expiry != 120 || r.Dropped != 1 {
		t.Fatalf("record not replaced: %+v", r)
	}

	// A session whose id extends another's keeps its own.
	must(t, ss.Put(store.SessionRecord{ClientID: "ss", Expiry: 60}))
	must(t, ss.PutSubscriptions("ss", []store.Subscription{b}))
	must(t, ss.DeleteSubscriptions("s", []string{"b/+/c"}))
	want(st, "s", a0, c)
	want(st, "ss", b)

	// Everything survives a restart.
	st = reopen()
	ss = st.Sessions()
	want(st, "s", a0, c)
	want(st, "ss", b)

	// Delete takes the subscriptions with the record: a new session of the same id has none.
	must(t, ss.Delete("s"))
	if _, ok := records(t, st)["s"]; ok {
		t.Fatal("deleted session still listed")
	}
	must(t, ss.Put(store.SessionRecord{ClientID: "s", Expiry: 60}))
	want(st, "s")
	want(st, "ss", b)

	// Subscriptions without a record are no session.
	must(t, ss.PutSubscriptions("orphan", []store.Subscription{c}))
	if _, ok := records(t, st)["orphan"]; ok {
		t.Fatal("subscriptions without a record listed as a session")
	}
	st = reopen()
	want(st, "s")
	want(st, "ss", b)
	must(t, st.Close())
}
