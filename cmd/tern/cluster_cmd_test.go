package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/cluster"
)

func runClusterCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "tern", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newClusterCmd())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"cluster"}, args...))
	err := root.Execute()
	return out.String(), err
}

// tern cluster remove asks the node for the removal (force only when asked) and shows the
// node's refusal as it is.
func TestClusterRemoveCommand(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.RequestURI())
		if r.URL.Query().Get("force") == "" {
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":"remove_refused","message":"cluster: removal refused: n3 is reachable"}`))
			return
		}
		_, _ = w.Write([]byte(`{"removed":"n3"}`))
	}))
	defer srv.Close()
	out, err := runClusterCmd(t, "remove", "n3", "--server", srv.URL)
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "n3 is reachable") {
		t.Fatalf("refused removal: %q %v", out, err)
	}
	out, err = runClusterCmd(t, "remove", "n3", "--force", "--server", srv.URL)
	if err != nil || !strings.Contains(out, "node n3 removed") {
		t.Fatalf("forced removal: %q %v", out, err)
	}
	want := []string{"POST /v1/cluster/remove/n3", "POST /v1/cluster/remove/n3?force=true"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("requests %v, want %v", got, want)
	}
	if _, err := runClusterCmd(t, "remove", "--server", srv.URL); err == nil {
		t.Fatal("remove without a node id ran")
	}
}

// tern cluster status prints members with their role, link, applied index, lag and last contact.
func TestClusterStatusPrinted(t *testing.T) {
	st := cluster.Status{Node: "n1", State: "leader", Leader: "n1", Term: 3, CommitIndex: 40, AppliedIndex: 40, LastIndex: 41,
		Members: []cluster.Member{
			{ID: "n1", Address: "10.0.0.1:7001", Voter: true, Leader: true, Self: true, Link: "self", AppliedIndex: 40},
			{ID: "n2", Address: "10.0.0.2:7001", Voter: true, Link: "up", AppliedIndex: 38, Lag: 2, LastContact: "120ms"},
			{ID: "n3", Address: "10.0.0.3:7001", Voter: true, Link: "down", AppliedIndex: 12, Lag: 28},
		}}
	var b bytes.Buffer
	printClusterStatus(&b, st)
	// Compare line by line with runs of spaces folded (the table's column widths vary).
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	out := strings.Join(lines, "\n")
	for _, want := range []string{"node n1: leader, term 3, leader n1", "raft: commit 40, applied 40, last 41",
		"NODE ADDRESS ROLE LINK APPLIED LAG LAST CONTACT INTEREST",
		"n2 10.0.0.2:7001 follower up 38 2 120ms 0", "n3 10.0.0.3:7001 follower down 12 28 - 0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status output lacks %q:\n%s", want, out)
		}
	}
}
