package webhook

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store/memstore"
)

// receiver records what an endpoint got; fail decides, per request, whether to answer 500.
type receiver struct {
	mu       sync.Mutex
	got      []string // payloads answered 2xx, in order
	attempts int
	fail     func(n int, payload string) bool
	badSig   int
	arrived  chan struct{}
	srv      *httptest.Server
}

func newReceiver(t *testing.T, secret string, fail func(int, string) bool) *receiver {
	r := &receiver{fail: fail, arrived: make(chan struct{}, 1000)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attempts++
		if secret != "" && req.Header.Get("X-Tern-Signature") != "sha256="+Sign(secret, req.Header.Get("X-Tern-Timestamp"), body) {
			r.badSig++
		}
		if r.fail != nil && r.fail(r.attempts, string(body)) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		r.got = append(r.got, string(body))
		r.arrived <- struct{}{}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) wait(t *testing.T, n int) []string {
	t.Helper()
	for range n {
		select {
		case <-r.arrived:
		case <-time.After(10 * time.Second):
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("received %v after %d attempts, want %d messages", r.got, r.attempts, n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func setup(t *testing.T) (*broker.Broker, *memstore.Records, Config) {
	b, err := broker.New(broker.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, memstore.NewRecords(), Config{AllowPrivate: true, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond}
}

func publish(t *testing.T, b *broker.Broker, topic string, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		if _, err := b.PublishAs(auth.Unrestricted(""), auth.Publish, &message.Message{Topic: topic, Payload: []byte(p), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRetriesKeepOrderAndDeliverOnce: an endpoint that fails the first two attempts of every
// message still gets each message exactly once, in order, signed.
func TestRetriesKeepOrderAndDeliverOnce(t *testing.T) {
	b, st, cfg := setup(t)
	seen := map[string]int{}
	r := newReceiver(t, "s3cret", func(_ int, payload string) bool {
		seen[payload]++
		return seen[payload] <= 2
	})
	m, err := New(b, st, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(auth.Unrestricted("alice"), Hook{Filter: "orders/#", URL: r.srv.URL, Secret: "s3cret"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"1", "2", "3", "4", "5"}
	publish(t, b, "orders/new", want...)
	if got := r.wait(t, 5); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("received %v", got)
	}
	m.Close() // waits for the workers, so the counters are final
	if r.badSig != 0 || r.attempts != 15 {
		t.Fatalf("bad signatures %d, attempts %d (want 15: three per message)", r.badSig, r.attempts)
	}
	if m.Stats().Delivered.Load() != 5 || m.Stats().Failed.Load() != 10 {
		t.Fatalf("stats delivered %d failed %d", m.Stats().Delivered.Load(), m.Stats().Failed.Load())
	}
}

// TestDeadLetter: an endpoint that always fails gets max_attempts tries per message, then the
// message goes to the dead-letter topic with the reason.
func TestDeadLetter(t *testing.T) {
	b, st, cfg := setup(t)
	r := newReceiver(t, "", func(int, string) bool { return true })
	var logs strings.Builder
	m, _ := New(b, st, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	defer m.Close()
	h, err := m.Create(auth.Unrestricted("alice"), Hook{Filter: "jobs/#", URL: r.srv.URL, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	dead := &collector{ch: make(chan *message.Message, 10)}
	c, _, err := b.Connect(context.Background(), broker.ConnectRequest{ClientID: "dlq", CleanStart: true, Sink: dead})
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe([]broker.SubscribeRequest{{Filter: h.DeadLetterTopic, QoS: 0}})
	c.Start()
	publish(t, b, "jobs/a", "x", "y")
	for _, want := range []string{"x", "y"} {
		select {
		case msg := <-dead.ch:
			props := map[string]string{}
			for _, u := range msg.Props.User {
				props[u.Key] = u.Value
			}
			if string(msg.Payload) != want || props["tern-original-topic"] != "jobs/a" || props["tern-attempts"] != "3" ||
				!strings.Contains(props["tern-error"], "500") {
				t.Fatalf("dead letter %q %v", msg.Payload, props)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no dead letter %q", want)
		}
	}
	m.Close() // waits for the workers: the counters are final
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.attempts != 6 || m.Stats().DeadLettered.Load() != 2 {
		t.Fatalf("attempts %d, dead-lettered %d", r.attempts, m.Stats().DeadLettered.Load())
	}
	// Failing attempts are warned about, but once a minute per webhook, not once each.
	if n := strings.Count(logs.String(), `msg="webhook delivery failing"`); n != 1 {
		t.Fatalf("%d failure warnings for 6 failed attempts within a minute, want 1:\n%s", n, logs.String())
	}
}

// collector is a broker.Sink keeping copies of what arrives.
type collector struct{ ch chan *message.Message }

func (c *collector) Send(d broker.Delivery) broker.SendResult {
	c.ch <- d.Msg.Clone()
	return broker.Sent
}
func (c *collector) Release(uint16)           {}
func (c *collector) Close(error)              {}
func (c *collector) Drained() <-chan struct{} { return nil }

// TestSurvivesRestart: messages published while the webhooks are stopped wait in the hook's
// session and are delivered when a new manager starts from the same records.
func TestSurvivesRestart(t *testing.T) {
	b, st, cfg := setup(t)
	r := newReceiver(t, "", nil)
	m, _ := New(b, st, cfg, nil)
	if _, err := m.Create(auth.Unrestricted("alice"), Hook{Filter: "t", URL: r.srv.URL}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "t", "before")
	r.wait(t, 1)
	m.Close()
	publish(t, b, "t", "while", "stopped")
	m2, err := New(b, st, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if got := r.wait(t, 2); strings.Join(got, ",") != "before,while,stopped" {
		t.Fatalf("received %v", got)
	}
	if n := len(m2.List(auth.Unrestricted(""))); n != 1 {
		t.Fatalf("%d hooks after restart", n)
	}
}

func TestSSRFGuard(t *testing.T) {
	b, st, _ := setup(t)
	m, _ := New(b, st, Config{}, nil)
	defer m.Close()
	p := auth.Unrestricted("alice")
	for _, u := range []string{"http://127.0.0.1:8080/x", "http://localhost/x", "http://10.1.2.3/", "http://192.168.0.1/",
		"http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[fe80::1]/", "http://0.0.0.0/", "http://100.64.0.1/"} {
		if _, err := m.Create(p, Hook{Filter: "a", URL: u}); !errors.Is(err, ErrForbiddenTarget) {
			t.Errorf("%s: %v, want refused", u, err)
		}
	}
	for _, u := range []string{"ftp://example.com/", "http://user:pw@example.com/", "http:///nohost"} {
		if _, err := m.Create(p, Hook{Filter: "a", URL: u}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	// A name is checked when dialled: a loopback answer is refused then.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := guardedDialer(false).DialContext(ctx, "tcp", ln.Addr().String()); !errors.Is(err, ErrForbiddenTarget) {
		t.Fatalf("dial loopback: %v", err)
	}
	if c, err := guardedDialer(true).DialContext(ctx, "tcp", ln.Addr().String()); err != nil {
		t.Fatalf("allowed dial: %v", err)
	} else {
		c.Close()
	}
}

func TestCreateChecks(t *testing.T) {
	b, st, cfg := setup(t)
	m, _ := New(b, st, cfg, nil)
	defer m.Close()
	p, _ := auth.NewPrincipal("bob", "", []auth.Grant{{Action: auth.Subscribe, Filter: "bob/#"}})
	if _, err := m.Create(p, Hook{Filter: "alice/#", URL: "http://127.0.0.1:1/"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("filter outside grants: %v", err)
	}
	if _, err := m.Create(p, Hook{Filter: "bob/#", URL: "http://127.0.0.1:1/", DeadLetterTopic: "elsewhere"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("dead letter topic outside grants: %v", err)
	}
	h, err := m.Create(p, Hook{Filter: "bob/#", URL: "http://127.0.0.1:1/", Secret: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if l := m.List(p); len(l) != 1 || l[0].Secret != "" {
		t.Fatalf("list %+v: the secret must not come back", l)
	}
	other, _ := auth.NewPrincipal("carol", "", nil)
	if err := m.Delete(other, h.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another identity deleting: %v", err)
	}
	if err := m.Delete(p, h.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Get(recordsNS, h.ID); ok {
		t.Fatal("record kept after delete")
	}
}
