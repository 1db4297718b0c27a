package server_test

import (
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/cluster"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server"
)

func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A single node that starts a cluster serves as a broker should, with its retained messages
// going through the cluster's log, and reports the cluster on /v1/cluster and /v1/stats.
func TestClusterNodeAlone(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.DataDir = t.TempDir()
		c.Cluster = config.Cluster{NodeID: "solo", Listen: freeTCP(t), Replicas: 3}
	})
	if srv.Cluster == nil {
		t.Fatal("no cluster node")
	}
	pub := v5(t, srv, uniqueID("pub"))
	if res := pub.publish(&paho.Publish{Topic: "c/r", QoS: 1, Retain: true, Payload: []byte("kept")}); res.ReasonCode >= 0x80 {
		t.Fatalf("retained publish refused: %#x", res.ReasonCode)
	}
	sub := v5(t, srv, uniqueID("sub"))
	sub.sub("c/#", 1)
	sub.expect("c/r", "kept")

	resp, err := http.Get("http://" + srv.Addr("http") + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	var st cluster.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Node != "solo" || st.Leader != "solo" || len(st.Members) != 1 || st.AppliedIndex < 2 {
		t.Fatalf("status %+v (%v)", st, err)
	}
	resp, err = http.Get("http://" + srv.Addr("http") + "/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats server.Stats
	err = json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	if err != nil || stats.Cluster == nil || stats.Cluster.Node != "solo" || stats.Retained != 1 {
		t.Fatalf("stats %+v (%v)", stats, err)
	}
}

// Without a cluster, /v1/cluster says so.
func TestClusterStatusWithoutCluster(t *testing.T) {
	srv := startServer(t)
	resp, err := http.Get("http://" + srv.Addr("http") + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
