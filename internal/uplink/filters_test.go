package uplink

import (
	"slices"
	"testing"
)

func TestMapFilter(t *testing.T) {
	cases := []struct {
		f, ns, want string
		ok          bool
	}{
		{"#", "bldg1", "bldg1/#", true},
		{"+", "bldg1", "bldg1", true},
		{"+/x", "bldg1", "bldg1/x", true},
		{"+/+/x/#", "bldg1", "bldg1/+/x/#", true},
		{"+/#", "bldg1", "bldg1/#", true},
		{"bldg1", "bldg1", "bldg1", true},
		{"bldg1/#", "bldg1", "bldg1/#", true},
		{"bldg1/a/+", "bldg1", "bldg1/a/+", true},
		{"bldg10/a", "bldg1", "", false},
		{"other/#", "bldg1", "", false},
		{"$SYS/#", "bldg1", "", false},
		{"$rpc/tern/query", "bldg1", "", false},
	}
	for _, c := range cases {
		got, ok := mapFilter(c.f, c.ns)
		if got != c.want || ok != c.ok {
			t.Errorf("mapFilter(%q, %q) = %q, %v; want %q, %v", c.f, c.ns, got, ok, c.want, c.ok)
		}
	}
}

func TestMapInterest(t *testing.T) {
	got := mapInterest([]string{"+/temp", "bldg1/a/#", "bldg2/x", "other/#", "$SYS/#"}, []string{"bldg1", "bldg2"})
	want := []string{"bldg1/a/#", "bldg1/temp", "bldg2/temp", "bldg2/x"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// # covers a namespace: its other filters are left out.
	got = mapInterest([]string{"bldg1/a", "#", "+/b"}, []string{"bldg1", "bldg2"})
	if want := []string{"bldg1/#", "bldg2/#"}; !slices.Equal(got, want) {
		t.Errorf("with #: %q, want %q", got, want)
	}
	if got := mapInterest([]string{"other/x"}, []string{"bldg1"}); len(got) != 0 {
		t.Errorf("nothing in the namespace: %q", got)
	}
}
