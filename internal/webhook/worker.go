package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// worker delivers one hook's messages.
type worker struct {
	m        *Manager
	h        Hook
	c        *broker.Client
	k        *sink
	att      *attempts
	interval time.Duration // between deliveries when the hook has a rate
	st       hookStats     // how its deliveries go (status.go)
	// retrySeen is the last retry-now record seen (shared.go), read and written by follow.
	retrySeen string

	paceMu sync.Mutex
	next   time.Time // earliest start of the next attempt under the rate

	// failMu guards the failure warnings' rate (logFailure).
	failMu      sync.Mutex
	lastWarn    time.Time
	failedSince int

	stopCh   chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// stop ends the workers; drop also ends the session, discarding its queue.
func (w *worker) stop(drop bool) {
	w.stopOnce.Do(func() { close(w.stopCh) })
	w.wg.Wait()
	req := broker.DisconnectRequest{Graceful: true}
	if drop {
		req.SetExpiry, req.Expiry = true, 0
	}
	w.c.Disconnect(req)
}

func (w *worker) run() {
	defer w.wg.Done()
	for {
		select {
		case d := <-w.k.ch:
			if !w.deliver(d) {
				return // stopping: the message stays in flight and comes back at the next start
			}
			w.c.Acked(d.pid)
			w.att.done(d.msg.ID)
		case <-w.k.closed:
			return
		case <-w.stopCh:
			return
		}
	}
}

// deliver tries the endpoint until it answers 2xx or the attempts are used up, then dead-letters
// the message. It returns false only when the worker is stopping. A message redelivered after a
// restart continues its count, at once: the wait before it was the restart.
func (w *worker) deliver(d delivery) bool {
	if d.begun >= w.h.MaxAttempts {
		w.deadLetter(d.msg, d.begun, fmt.Errorf("attempt %d was under way when tern stopped, and it was the last", d.begun))
		return true
	}
	var lastErr error
	first := d.begun + 1
	for attempt := first; attempt <= w.h.MaxAttempts; attempt++ {
		if attempt > first && !w.retryWait(w.backoff(attempt-1)) {
			return false
		}
		if !w.pace() {
			return false
		}
		// Counted on disk before the endpoint can see it. A QoS 0 message does not come back
		// after a restart, so its count is not kept.
		if d.qos > 0 {
			if err := w.att.begin(d.msg.ID, attempt); err != nil {
				w.m.log.Warn("webhook attempt not recorded; after a crash it would be repeated under the same number",
					"webhook", w.h.ID, "attempt", attempt, "err", err)
			}
		}
		err := w.post(d.msg, attempt)
		w.m.stats.Attempts.Add(1)
		w.st.attempted(err)
		w.m.statusChanged(w)
		if err == nil {
			w.m.stats.Delivered.Add(1)
			return true
		}
		lastErr = err
		w.m.stats.Failed.Add(1)
		w.logFailure(attempt, err)
	}
	w.deadLetter(d.msg, w.h.MaxAttempts, lastErr)
	return true
}

// backoff is the delay before retry n (1-based): base·2^(n-1), capped, times a random factor in
// [0.5, 1) so that many failing hooks do not retry in step.
func (w *worker) backoff(n int) time.Duration {
	d := w.m.cfg.BackoffBase << min(n-1, 30)
	if d <= 0 || d > w.m.cfg.BackoffMax {
		d = w.m.cfg.BackoffMax
	}
	return time.Duration(float64(d) * (0.5 + rand.Float64()/2))
}

func (w *worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stopCh:
		return false
	}
}

// pace waits for the hook's rate, shared by its concurrent workers.
func (w *worker) pace() bool {
	if w.interval == 0 {
		return true
	}
	w.paceMu.Lock()
	now := time.Now()
	start := now
	if w.next.After(now) {
		start = w.next
	}
	w.next = start.Add(w.interval)
	w.paceMu.Unlock()
	return start.Equal(now) || w.sleep(start.Sub(now))
}

// post makes one attempt. The signature covers the timestamp and the body, so a captured delivery
// cannot be replayed later with a fresh timestamp.
func (w *worker) post(m *message.Message, attempt int) error {
	// Stopping does not cut an attempt short: the endpoint may already have taken the message,
	// and only a finished attempt tells whether to acknowledge it. The timeout bounds the wait.
	ctx, cancel := context.WithTimeout(context.Background(), w.m.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.h.URL, bytes.NewReader(m.Payload))
	if err != nil {
		return err
	}
	h := req.Header
	ct := m.Props.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("User-Agent", "tern-webhook")
	h.Set("X-Tern-Webhook", w.h.ID)
	h.Set("X-Tern-Topic", m.Topic)
	h.Set("X-Tern-Message-Id", strconv.FormatUint(m.ID, 10))
	h.Set("X-Tern-Attempt", strconv.Itoa(attempt))
	if m.Sender != "" {
		h.Set("X-Tern-Sender", m.Sender)
	}
	if w.h.Secret != "" {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		h.Set("X-Tern-Timestamp", ts)
		h.Set("X-Tern-Signature", "sha256="+Sign(w.h.Secret, ts, m.Payload))
	}
	resp, err := w.m.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("endpoint answered %s", resp.Status)
	}
	return nil
}

// Sign is the X-Tern-Signature value (without "sha256="): hex HMAC-SHA256 of
// "<timestamp>.<body>" with the hook's secret. Receivers compute the same and compare in
// constant time, and refuse old timestamps.
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// deadLetter publishes a message the endpoint did not acknowledge to the hook's dead-letter
// topic, with where it came from and why it failed.
func (w *worker) deadLetter(m *message.Message, attempts int, cause error) {
	dl := m.Clone()
	dl.Topic, dl.Retain, dl.QoS = w.h.DeadLetterTopic, false, 1
	dl.Props.User = append(dl.Props.User,
		message.UserProperty{Key: "tern-webhook", Value: w.h.ID},
		message.UserProperty{Key: "tern-original-topic", Value: m.Topic},
		message.UserProperty{Key: "tern-attempts", Value: strconv.Itoa(attempts)},
		message.UserProperty{Key: "tern-error", Value: fmt.Sprint(cause)})
	p := w.c.Principal()
	res, err := w.m.b.PublishAs(p, auth.Publish, dl)
	if err == nil && res.Durable != nil {
		err = res.Durable.Wait()
	}
	if err != nil {
		w.m.log.Warn("webhook dead letter not published", "webhook", w.h.ID, "topic", w.h.DeadLetterTopic, "err", err)
	}
	w.m.stats.DeadLettered.Add(1)
	w.st.gaveUp(m, attempts, cause)
	w.m.statusChanged(w)
	w.m.log.Info("webhook gave up on a message", "webhook", w.h.ID, "url", w.h.URL,
		"attempts", attempts, "dead_letter_topic", w.h.DeadLetterTopic, "err", cause)
}

// delivery is a message handed to a hook's workers.
type delivery struct {
	msg   *message.Message
	pid   uint16
	qos   byte
	begun int // attempts made before a restart
}

// sink feeds a hook's workers. The session's in-flight window is the hook's concurrency and the
// channel has room beyond it, so a QoS 1 delivery never finds it full; QoS 0 messages that find
// it full (the endpoint far behind) are dropped and counted, as for any slow subscriber.
type sink struct {
	ch     chan delivery
	att    *attempts
	closed chan struct{}
	once   sync.Once
}

func newSink(n int, att *attempts) *sink {
	return &sink{ch: make(chan delivery, n), att: att, closed: make(chan struct{})}
}

// Send is called in the session's order, so the attempt counts see redeliveries before new
// messages.
func (k *sink) Send(d broker.Delivery) broker.SendResult {
	begun := k.att.sent(d.Msg.ID, d.Dup)
	select {
	case k.ch <- delivery{msg: d.Msg.Clone(), pid: d.PacketID, qos: d.QoS, begun: begun}:
		return broker.Sent
	default:
		return broker.Busy
	}
}
func (k *sink) Release(uint16)           {}
func (k *sink) Close(error)              { k.once.Do(func() { close(k.closed) }) }
func (k *sink) Drained() <-chan struct{} { return nil }

// failureLogInterval is the least time between two warnings about one webhook's failing
// attempts; the attempts in between are counted in the next warning.
const failureLogInterval = time.Minute

// logFailure warns about a failed attempt, at most once per failureLogInterval per webhook (a
// failing endpoint retried every second must not flood the log), saying how many failed since
// the last warning. Every failure is logged at debug level.
func (w *worker) logFailure(attempt int, err error) {
	w.m.log.Debug("webhook delivery failed", "webhook", w.h.ID, "url", w.h.URL, "attempt", attempt, "err", err)
	w.failMu.Lock()
	w.failedSince++
	now := time.Now()
	if !w.lastWarn.IsZero() && now.Sub(w.lastWarn) < failureLogInterval {
		w.failMu.Unlock()
		return
	}
	n := w.failedSince
	w.failedSince, w.lastWarn = 0, now
	w.failMu.Unlock()
	w.m.log.Warn("webhook delivery failing", "webhook", w.h.ID, "url", w.h.URL, "attempt", attempt,
		"failed_attempts", n, "err", err)
}
