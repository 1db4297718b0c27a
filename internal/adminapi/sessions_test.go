package adminapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// fakeSink is a connection as the core sees it; closed records why the core ended it.
type fakeSink struct {
	mu     sync.Mutex
	closed error
}

func (k *fakeSink) Send(broker.Delivery) broker.SendResult { return broker.Busy }
func (k *fakeSink) Release(uint16)                         {}
func (k *fakeSink) Drained() <-chan struct{}               { return nil }
func (k *fakeSink) Close(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = err
}

func TestSessionsRoutes(t *testing.T) {
	a, err := auth.New(auth.Config{Argon2: auth.Argon2Params{Memory: 64, Time: 1, Threads: 1}}, auth.NewMemStore(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := httptest.NewServer(adminapi.New(a, nil, nil, adminapi.WithBroker(b)))
	defer srv.Close()
	anon := client{t: t, url: srv.URL}
	anon.want(http.StatusOK, "PUT", "/v1/admin/users/root", map[string]any{"password": "rootpw", "grants": []string{"admin:#"}})
	root := client{t: t, url: srv.URL, user: "root", pw: "rootpw"}
	root.want(http.StatusOK, "PUT", "/v1/admin/users/ops", map[string]any{"password": "opspw", "grants": []string{"admin:sessions/+"}, "groups": []string{}})
	root.want(http.StatusOK, "POST", "/v1/admin/grants", map[string]any{"user": "ops", "grants": []string{"deny:admin:sessions/Backlog"}})
	ops := client{t: t, url: srv.URL, user: "ops", pw: "opspw"}

	// Two sessions: an offline one with a queue, and a connected one.
	all := auth.Unrestricted("dev")
	k := &fakeSink{}
	c, _, err := b.Connect(context.Background(), broker.ConnectRequest{ClientID: "sensor-1", Principal: all, Face: "mqtt", Sink: k})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	q, _, err := b.Connect(context.Background(), broker.ConnectRequest{ClientID: "Backlog", Principal: all, Face: "http", Expiry: 60, Sink: &fakeSink{}})
	if err != nil {
		t.Fatal(err)
	}
	q.Subscribe([]broker.SubscribeRequest{{Filter: "jobs/#", QoS: 1}})
	q.Disconnect(broker.DisconnectRequest{Graceful: true})
	for range 2 {
		if _, err := b.PublishAs(all, auth.Publish, &message.Message{Topic: "jobs/1", Payload: []byte("x"), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}

	list := decodeInto[adminapi.SessionList](t, root.want(http.StatusOK, "GET", "/v1/admin/sessions", nil))
	if list.Total != 2 || list.Sessions[0].ClientID != "Backlog" || list.Sessions[0].Queued != 2 || list.Sessions[1].Face != "mqtt" {
		t.Fatalf("default order (deepest queue first): %+v", list)
	}
	list = decodeInto[adminapi.SessionList](t, root.want(http.StatusOK, "GET", "/v1/admin/sessions?q=backLOG", nil))
	if list.Total != 1 || list.Sessions[0].ClientID != "Backlog" {
		t.Fatalf("search is case-insensitive: %+v", list)
	}
	list = decodeInto[adminapi.SessionList](t, root.want(http.StatusOK, "GET", "/v1/admin/sessions?sort=client_id&order=desc&limit=1", nil))
	if list.Total != 2 || len(list.Sessions) != 1 || list.Sessions[0].ClientID != "sensor-1" {
		t.Fatalf("sorted by client id, descending, one: %+v", list)
	}
	root.want(http.StatusBadRequest, "GET", "/v1/admin/sessions?sort=size", nil)
	root.want(http.StatusBadRequest, "GET", "/v1/admin/sessions?limit=0", nil)
	if faces := root.want(http.StatusOK, "GET", "/v1/admin/faces", nil); !strings.Contains(faces, `"mqtt":1`) {
		t.Fatalf("faces %s", faces)
	}

	d := decodeInto[broker.SessionDetail](t, root.want(http.StatusOK, "GET", "/v1/admin/sessions/Backlog", nil))
	if d.Queued != 2 || len(d.Subscriptions) != 1 || d.Subscriptions[0].Filter != "jobs/#" || d.Oldest == nil {
		t.Fatalf("detail %+v", d)
	}
	root.want(http.StatusNotFound, "GET", "/v1/admin/sessions/nobody", nil)

	// ops may act on single sessions but not list them, nor touch Backlog.
	ops.want(http.StatusForbidden, "GET", "/v1/admin/sessions", nil)
	ops.want(http.StatusForbidden, "DELETE", "/v1/admin/sessions/Backlog/queue", nil)
	ops.want(http.StatusNoContent, "POST", "/v1/admin/sessions/sensor-1/disconnect", nil)
	k.mu.Lock()
	closed := k.closed
	k.mu.Unlock()
	if closed != broker.ErrAdministrativeAction {
		t.Fatalf("the connection was closed with %v", closed)
	}
	root.want(http.StatusConflict, "POST", "/v1/admin/sessions/Backlog/disconnect", nil)
	if b := root.want(http.StatusOK, "DELETE", "/v1/admin/sessions/Backlog/queue", nil); !strings.Contains(b, `"purged":2`) {
		t.Fatalf("purge answered %s", b)
	}
	if d := decodeInto[broker.SessionDetail](t, root.want(http.StatusOK, "GET", "/v1/admin/sessions/Backlog", nil)); d.Queued != 0 {
		t.Fatalf("queued after purge: %d", d.Queued)
	}
}
