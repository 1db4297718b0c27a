package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/cluster"
)

// POST /v1/cluster/remove/{node}: a node still reachable is refused (409 remove_refused), an
// unknown one is 404 not_member, a bad force is 400; once the node is gone it is removed through
// any member and the others see two members.
func TestClusterRemoveOverHTTP(t *testing.T) {
	nodes := threeNodes(t)
	base := func(i int) string { return "http://" + nodes[i].Addr("http") }
	status := func(i int) cluster.Status {
		t.Helper()
		resp, body := httpDo(t, "GET", base(i)+"/v1/cluster", "")
		var st cluster.Status
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("status of node %d: %d %s", i, resp.StatusCode, body)
		}
		return st
	}
	linkTo := func(st cluster.Status, id string) string {
		for _, m := range st.Members {
			if m.ID == id {
				return m.Link
			}
		}
		return "not a member"
	}
	eventually(t, waitTimeout, "n2 reaches n3", func() bool { return linkTo(status(1), "n3") == "up" })

	for _, c := range []struct {
		path, code string
		status     int
	}{
		{"/v1/cluster/remove/n3", "remove_refused", http.StatusConflict},
		{"/v1/cluster/remove/n2", "remove_refused", http.StatusConflict},
		{"/v1/cluster/remove/n9", "not_member", http.StatusNotFound},
		{"/v1/cluster/remove/n3?force=maybe", "bad_request", http.StatusBadRequest},
	} {
		resp, body := httpDo(t, "POST", base(1)+c.path, "")
		if resp.StatusCode != c.status || !strings.Contains(body, `"`+c.code+`"`) {
			t.Fatalf("POST %s: %d %s, want %d %s", c.path, resp.StatusCode, body, c.status, c.code)
		}
	}

	_ = nodes[2].Close()
	eventually(t, waitTimeout, "n2 sees n3's link down", func() bool { return linkTo(status(1), "n3") == "down" })
	resp, body := httpDo(t, "POST", base(1)+"/v1/cluster/remove/n3", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"removed":"n3"`) {
		t.Fatalf("removing the stopped node: %d %s", resp.StatusCode, body)
	}
	eventually(t, waitTimeout, "n1 sees two members", func() bool {
		st := status(0)
		return len(st.Members) == 2 && linkTo(st, "n3") == "not a member"
	})
}
