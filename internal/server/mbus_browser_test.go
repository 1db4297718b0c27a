package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ternmq/tern/internal/browsertest"
	"github.com/ternmq/tern/internal/config"
)

// mbusPage connects as mBus's own browser client (MBusClient.js) does: a WebSocket to
// ws://host:port with no path and the subprotocol "mbus", binary frames of a 4-byte big-endian
// length and JSON; it creates a client, asks command.clients, and writes what it got into #out.
const mbusPage = `<!doctype html><html><body><pre id="out"></pre><script>
const out = document.getElementById("out");
const ws = new WebSocket("ws://" + location.hash.slice(1), "mbus");
ws.binaryType = "arraybuffer";
let seq = 0, pending = new Uint8Array(0);
function send(dest, id, payload) {
	const body = new TextEncoder().encode(JSON.stringify({
		"org.mbus.method.tag.type": "org.mbus.method.type.command",
		"org.mbus.method.tag.destination": dest, "org.mbus.method.tag.identifier": id,
		"org.mbus.method.tag.sequence": ++seq, "org.mbus.method.tag.payload": payload}));
	const frame = new Uint8Array(4 + body.length);
	new DataView(frame.buffer).setUint32(0, body.length);
	frame.set(body, 4);
	ws.send(frame);
}
ws.onopen = () => send("org.mbus.server", "command.create", {identifier: "org.example.page"});
ws.onmessage = (e) => {
	const data = new Uint8Array(e.data), all = new Uint8Array(pending.length + data.length);
	all.set(pending); all.set(data, pending.length); pending = all;
	while (pending.length >= 4) {
		const n = new DataView(pending.buffer, pending.byteOffset).getUint32(0);
		if (pending.length < 4 + n) break;
		const m = JSON.parse(new TextDecoder().decode(pending.slice(4, 4 + n)));
		pending = pending.slice(4 + n);
		if (m["org.mbus.method.tag.type"] !== "org.mbus.method.type.result") continue;
		const status = m["org.mbus.method.tag.status"], payload = m["org.mbus.method.tag.payload"];
		if (m["org.mbus.method.tag.sequence"] === 1) {
			out.textContent += "create " + status + "\n";
			send("org.mbus.server", "command.clients", {});
		} else {
			out.textContent += "clients " + status + " " + JSON.stringify(payload) + "\n";
		}
	}
};
ws.onerror = () => { out.textContent += "error\n"; };
</script></body></html>`

// TestMBusBrowserClient: a page in a real browser connects to listen.mbus_ws the way mBus's own
// browser client does (no path), creates its client and lists the clients.
func TestMBusBrowserClient(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.Listen.MBusWS = "127.0.0.1:0" })
	ctx := openPage(t, mbusPage, srv.Addr("mbus_ws"))
	got := waitPageOut(t, ctx, "clients")
	if !strings.Contains(got, "create 0") || !strings.Contains(got, `clients 0 ["org.example.page"]`) {
		t.Fatalf("the page got %q", got)
	}
}

// openPage serves html (UTF-8) and opens it in a real browser with hash after its "#".
func openPage(t *testing.T, html, hash string) context.Context {
	t.Helper()
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(html))
	}))
	t.Cleanup(page.Close)
	ctx := browsertest.Start(t, nil, time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL+"/#"+hash)); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// waitPageOut returns the text of the page's #out once it holds want (within 20 s).
func waitPageOut(t *testing.T, ctx context.Context, want string) string {
	t.Helper()
	var got string
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(got, want) {
		if time.Now().After(deadline) {
			t.Fatalf("the page got %q, waiting for %q", got, want)
		}
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("out").textContent`))
		if err != nil {
			t.Fatal(err)
		}
		got = v
		time.Sleep(20 * time.Millisecond)
	}
	return got
}
