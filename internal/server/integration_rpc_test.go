package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/broker"
)

// TestHTTPCallReachesMQTT5Service: an MQTT 5 client serving $rpc/calc/add answers an HTTP call
// with a status; a procedure nobody serves fails at once; a service that dies with a call pending
// fails it at once.
func TestHTTPCallReachesMQTT5Service(t *testing.T) {
	srv := startServer(t)
	base := "http://" + srv.Addr("http")
	calls := make(chan *paho.Publish, 4)
	svc := v5(t, srv, "calc", func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = append(cc.OnPublishReceived, func(pr paho.PublishReceived) (bool, error) {
			calls <- pr.Packet
			if string(pr.Packet.Payload) == "hang" {
				return true, nil // never answers
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				p := pr.Packet
				_, _ = pr.Client.Publish(ctx, &paho.Publish{Topic: p.Properties.ResponseTopic, QoS: 1, Payload: []byte("sum:" + string(p.Payload)),
					Properties: &paho.PublishProperties{CorrelationData: p.Properties.CorrelationData,
						User: paho.UserProperties{{Key: broker.StatusProperty, Value: "0"}}}})
			}()
			return true, nil
		})
	})
	svc.sub("$share/calc/$rpc/calc/add", 1)

	resp, body := httpDo(t, "POST", base+"/v1/call/calc/add?timeout=5s", "1+2")
	if resp.StatusCode != 200 || body != "sum:1+2" || resp.Header.Get("X-Tern-Status") != "0" {
		t.Fatalf("call: %d %q status %q", resp.StatusCode, body, resp.Header.Get("X-Tern-Status"))
	}
	resp, body = httpDo(t, "GET", base+"/v1/services", "")
	var sv []broker.ServiceInfo
	if json.Unmarshal([]byte(body), &sv) != nil || len(sv) != 1 || sv[0].Procedure != "add" {
		t.Fatalf("services: %d %s", resp.StatusCode, body)
	}

	start := time.Now()
	resp, body = httpDo(t, "POST", base+"/v1/call/calc/mul?timeout=30s", "x")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "no_responders") || time.Since(start) > 5*time.Second {
		t.Fatalf("unserved: %d %s after %v", resp.StatusCode, body, time.Since(start))
	}

	// The service receives a call and its connection dies before it answers.
	done := make(chan struct{})
	var status int
	var failBody string
	go func() {
		defer close(done)
		r, b := httpDo(t, "POST", base+"/v1/call/calc/add?timeout=30s", "hang")
		status, failBody = r.StatusCode, b
	}()
	<-calls // the first call
	select {
	case <-calls:
	case <-time.After(waitTimeout):
		t.Fatal("the hanging call never reached the service")
	}
	start = time.Now()
	svc.drop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not fail when its service went away")
	}
	if status != http.StatusBadGateway || !strings.Contains(failBody, "service disconnected") || time.Since(start) > 5*time.Second {
		t.Fatalf("after the service died: %d %s", status, failBody)
	}
}
