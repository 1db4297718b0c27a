package webhook

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// hit is one request an endpoint got.
type hit struct{ msgID, attempt, body string }

// endpoint answers each request with answer(n), n counting from 1, and reports it on hits
// first. answer may block; it gets the request's context, which ends when the connection does.
func endpoint(t *testing.T, answer func(ctx context.Context, n int) int) (string, <-chan hit) {
	hits := make(chan hit, 100)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1))
		b, _ := io.ReadAll(io.LimitReader(r.Body, 64))
		hits <- hit{r.Header.Get("X-Tern-Message-Id"), r.Header.Get("X-Tern-Attempt"), string(b)}
		w.WriteHeader(answer(r.Context(), i))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

func nextHit(t *testing.T, hits <-chan hit) hit {
	t.Helper()
	select {
	case h := <-hits:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint got no request")
		return hit{}
	}
}

// deadLetters subscribes to a hook's dead-letter topic.
func deadLetters(t *testing.T, b *broker.Broker, topic string) <-chan *message.Message {
	dead := &collector{ch: make(chan *message.Message, 10)}
	c, _, err := b.Connect(context.Background(), broker.ConnectRequest{ClientID: "dlq-" + topic, CleanStart: true, Sink: dead})
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe([]broker.SubscribeRequest{{Filter: topic, QoS: 0}})
	c.Start()
	return dead.ch
}

func userProps(m *message.Message) map[string]string {
	out := map[string]string{}
	for _, u := range m.Props.User {
		out[u.Key] = u.Value
	}
	return out
}

// blockFirst blocks the first request until release is called (the tern that sent it has
// died meanwhile), then fails it; it answers the others with status.
func blockFirst(t *testing.T, status int) (answer func(context.Context, int) int, release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return func(ctx context.Context, n int) int {
		if n == 1 {
			select {
			case <-ch:
			case <-ctx.Done():
			}
			return http.StatusInternalServerError
		}
		return status
	}, release
}

// TestCrashMidAttemptRedeliversWithNextAttempt: a tern that dies while the endpoint holds a
// request is replaced by a new one on the same state (here: a second manager that takes the
// hook's session over, leaving the first as a dead process would, its request unanswered). The
// message comes again, same id, as attempt 2.
func TestCrashMidAttemptRedeliversWithNextAttempt(t *testing.T) {
	b, st, cfg := setup(t)
	answer, release := blockFirst(t, http.StatusOK)
	url, hits := endpoint(t, answer)
	m1, _ := New(b, st, cfg, nil)
	defer m1.Close()
	defer release() // before m1.Close, which waits for the request
	if _, err := m1.Create(auth.Unrestricted("alice"), Hook{Filter: "t", URL: url, MaxAttempts: 3}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "t", "once")
	first := nextHit(t, hits)

	m2, err := New(b, st, cfg, nil) // the restarted tern
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	again := nextHit(t, hits)
	if first.attempt != "1" || again.attempt != "2" || again.msgID != first.msgID || again.body != "once" {
		t.Fatalf("first %+v, after the crash %+v: want attempt 2 of the same message", first, again)
	}
}

// TestCrashDuringLastAttemptDeadLetters: when the attempt under way at a crash was the last
// one, the redelivered message goes to the dead-letter topic instead of starting over.
func TestCrashDuringLastAttemptDeadLetters(t *testing.T) {
	b, st, cfg := setup(t)
	answer, release := blockFirst(t, http.StatusOK)
	url, hits := endpoint(t, answer)
	m1, _ := New(b, st, cfg, nil)
	defer m1.Close()
	defer release()
	h, err := m1.Create(auth.Unrestricted("alice"), Hook{Filter: "t", URL: url, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	dead := deadLetters(t, b, h.DeadLetterTopic)
	publish(t, b, "t", "last")
	nextHit(t, hits)

	m2, _ := New(b, st, cfg, nil)
	select {
	case msg := <-dead:
		p := userProps(msg)
		if string(msg.Payload) != "last" || p["tern-attempts"] != "1" || !strings.Contains(p["tern-error"], "under way when tern stopped") {
			t.Fatalf("dead letter %q %v", msg.Payload, p)
		}
	case h := <-hits:
		t.Fatalf("attempted again after the last attempt: %+v", h)
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter")
	}
	m2.Close() // waits for its worker: nothing more will be sent
	select {
	case h := <-hits:
		t.Fatalf("attempted again after dead-lettering: %+v", h)
	default:
	}
}

// TestAttemptCountSurvivesOrderlyRestarts: a message stopped during its backoff keeps its count
// over restarts, is retried at once after each, and is dead-lettered after max_attempts in all.
func TestAttemptCountSurvivesOrderlyRestarts(t *testing.T) {
	b, st, cfg := setup(t)
	// Retries wait an hour: only a restart brings the next attempt within the test's time.
	cfg.BackoffBase, cfg.BackoffMax = time.Hour, time.Hour
	url, hits := endpoint(t, func(context.Context, int) int { return http.StatusServiceUnavailable })
	m, _ := New(b, st, cfg, nil)
	h, err := m.Create(auth.Unrestricted("alice"), Hook{Filter: "t", URL: url, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	dead := deadLetters(t, b, h.DeadLetterTopic)
	publish(t, b, "t", "retry me")
	var ids []string
	for want := 1; want <= 3; want++ {
		got := nextHit(t, hits)
		if got.attempt != string(rune('0'+want)) {
			t.Fatalf("attempt %s, want %d", got.attempt, want)
		}
		ids = append(ids, got.msgID)
		if want < 3 {
			m.Close()
			if m, err = New(b, st, cfg, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer m.Close()
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("message ids %v", ids)
	}
	select {
	case msg := <-dead:
		if p := userProps(msg); p["tern-attempts"] != "3" || !strings.Contains(p["tern-error"], "503") {
			t.Fatalf("dead letter %v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter after the third attempt")
	}
}

// TestAttemptsRecordStaysSmall: the record holds only what may come back. An acknowledged
// message leaves it at the next attempt, and counts from before a restart whose messages were not
// redelivered leave it once a new message arrives.
func TestAttemptsRecordStaysSmall(t *testing.T) {
	b, st, cfg := setup(t)
	url, hits := endpoint(t, func(context.Context, int) int { return http.StatusOK })
	m, _ := New(b, st, cfg, nil)
	h, err := m.Create(auth.Unrestricted("alice"), Hook{Filter: "t", URL: url})
	if err != nil {
		t.Fatal(err)
	}
	record := func() map[uint64]int {
		t.Helper()
		raw, ok, err := st.Get(attemptsNS, h.ID)
		if err != nil || !ok {
			t.Fatalf("record: %v %v", ok, err)
		}
		n, err := decodeAttempts(raw)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	publish(t, b, "t", "a")
	nextHit(t, hits)
	publish(t, b, "t", "b")
	second := nextHit(t, hits)
	m.Close() // the second delivery is complete
	if r := record(); len(r) != 1 || r[parseID(t, second.msgID)] != 1 {
		t.Fatalf("record %v, want only the second message's attempt", r)
	}

	// A count left from before a restart, for a message that will not come back.
	if err := st.Put(attemptsNS, h.ID, encodeAttempts(map[uint64]int{1: 4, parseID(t, second.msgID): 1})); err != nil {
		t.Fatal(err)
	}
	m, _ = New(b, st, cfg, nil)
	publish(t, b, "t", "c")
	third := nextHit(t, hits)
	m.Close()
	if r := record(); !maps.Equal(r, map[uint64]int{parseID(t, third.msgID): 1}) {
		t.Fatalf("record %v, want only the third message's attempt", r)
	}
	m, _ = New(b, st, cfg, nil)
	defer m.Close()
	if err := m.Delete(auth.Unrestricted("alice"), h.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Get(attemptsNS, h.ID); ok {
		t.Fatal("attempts record kept after the webhook was deleted")
	}
}

func parseID(t *testing.T, s string) uint64 {
	t.Helper()
	var id uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("message id %q", s)
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

func TestAttemptsRecordRoundTrip(t *testing.T) {
	for _, n := range []map[uint64]int{{}, {1: 1}, {0: 0, 1<<64 - 1: 1<<31 - 1, 42: 3}} {
		got, err := decodeAttempts(encodeAttempts(n))
		if err != nil || !maps.Equal(got, n) {
			t.Fatalf("%v: %v %v", n, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {}, {2}, {1, 0x80}, {1, 5}, {1, 5, 0x80}, {1, 5, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		if _, err := decodeAttempts(bad); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
}

func FuzzDecodeAttempts(f *testing.F) {
	f.Add(encodeAttempts(map[uint64]int{7: 2, 1 << 40: 10}))
	f.Add([]byte{1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeAttempts(b)
		if err != nil {
			return
		}
		again, err := decodeAttempts(encodeAttempts(n))
		if err != nil || !maps.Equal(again, n) {
			t.Fatalf("%x: %v, re-encoded %v %v", b, n, again, err)
		}
	})
}
