package console_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/browsertest"
)

// The console driven by a real browser: Debian's chromium, headless, through chromedp. The tests
// skip only when no chromium binary exists at all; CI installs one (.ci/run).
//
// Screenshots of every page go to $TERN_CONSOLE_SCREENSHOTS when set (a directory), else to the
// test's temporary directory.

// browser is one headless Chromium tab, with what its pages logged.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string

	mu     sync.Mutex
	errors []string // exceptions, console errors and CSP reports
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	dir := os.Getenv("TERN_CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, dir: dir, base: base}
	ctx := browsertest.Start(t, b.listen, 3*time.Minute)
	b.ctx = ctx
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enabling the log domain: %v", err)
	}
	return b
}

// listen keeps what the page reports: exceptions, console errors, and the log's errors (CSP
// violations and failed loads among them).
func (b *browser) listen(ev any) {
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.note(fmt.Sprintf("exception: %s (%s:%d)", msg, d.URL, d.LineNumber))
	case *runtime.EventConsoleAPICalled:
		if e.Type == "error" {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.note("console.error: " + strings.Join(parts, " "))
		}
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError {
			b.note(fmt.Sprintf("log (%s): %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
		}
	}
}

func (b *browser) note(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errors = append(b.errors, s)
}

// problems returns what the pages reported, except entries accept allows.
func (b *browser) problems(accept func(string) bool) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, e := range b.errors {
		if accept == nil || !accept(e) {
			out = append(out, e)
		}
	}
	return out
}

func (b *browser) run(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (page reported: %q)", err, b.problems(nil))
	}
}

// shot saves a full-page screenshot as name.png (quality 100 is PNG; below, JPEG).
func (b *browser) shot(name string) {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
}

// waitText waits until the element sel matches contains want.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, want)
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		got, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || "(no element)"`, sel)))
		b.t.Fatalf("waiting for %q in %s: %v; it has %q (page reported: %q)", want, sel, err, got, b.problems(nil))
	}
}

// eval runs a JavaScript expression (awaiting a promise) and returns its value.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// goTo opens a console page (#/page) and waits for its heading.
func (b *browser) goTo(hash, heading string) {
	b.t.Helper()
	b.run(chromedp.Navigate(b.base + "/#/" + hash))
	b.waitText("#content h1", heading)
}

// clickTwice clicks a confirm button: once to arm it, once to act.
func (b *browser) clickTwice(sel string) {
	b.t.Helper()
	b.run(chromedp.Click(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// mqttClient is a paho.golang MQTT 5 client with what it received.
type mqttClient struct {
	c    *paho.Client
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
}

func dialMQTT(t *testing.T, addr, id, user, password string) (*mqttClient, *paho.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := &mqttClient{msgs: make(chan *paho.Publish, 100), disc: make(chan *paho.Disconnect, 1)}
	m.c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case m.msgs <- pr.Packet:
			default:
			}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case m.disc <- d:
			default:
			}
		},
		PacketTimeout: 10 * time.Second,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if user != "" || password != "" {
		cp.Username, cp.UsernameFlag = user, user != ""
		cp.Password, cp.PasswordFlag = []byte(password), true
	}
	ack, err := m.c.Connect(ctx, cp)
	if err == nil {
		t.Cleanup(func() {
			select {
			case <-m.c.Done():
			default:
				_ = m.c.Disconnect(&paho.Disconnect{})
			}
		})
	} else {
		_ = conn.Close()
	}
	return m, ack, err
}

func (m *mqttClient) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}}); err != nil {
		t.Fatal(err)
	}
}

func (m *mqttClient) publish(t *testing.T, topic, payload string, qos byte, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}); err != nil {
		t.Fatal(err)
	}
}

func (m *mqttClient) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case p := <-m.msgs:
		return p
	case <-time.After(20 * time.Second):
		t.Fatal("no message arrived")
		return nil
	}
}
