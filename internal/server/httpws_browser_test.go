package server_test

import (
	"strings"
	"testing"
)

// jsonWSPage uses /v1/ws from a real browser: it subscribes, publishes once it has the suback,
// logs every message's payload length and its first characters into #out, and after the
// "last" message sends a frame that is not JSON, logging the close code it gets.
const jsonWSPage = `<!doctype html><html><body><pre id="out"></pre><script>
const out = document.getElementById("out");
const ws = new WebSocket("ws://" + location.hash.slice(1) + "/v1/ws");
ws.onopen = () => ws.send(JSON.stringify({op: "sub", filter: "browser/#", id: 1}));
ws.onmessage = (e) => {
	const m = JSON.parse(e.data);
	if (m.op === "suback") {
		out.textContent += "suback\n";
		ws.send(JSON.stringify({op: "pub", topic: "page/out", payload: "från sidan ✓ " + "y".repeat(70000), id: 2}));
	} else if (m.op === "puback") {
		out.textContent += "puback " + m.id + "\n";
	} else if (m.op === "msg") {
		const p = m.message.payload;
		out.textContent += "msg " + p.length + " " + p.slice(0, 8) + "\n";
		if (p === "last") ws.send("not json");
	}
};
ws.onclose = (e) => { out.textContent += "closed " + e.code + "\n"; };
</script></body></html>`

// TestJSONWebSocketInBrowser: a page in a real browser speaks /v1/ws, whose framing is tern's
// own (internal/wsconn): the browser's masked frames, a 70 KB message each way (64-bit frame
// lengths), text beyond ASCII, and the close code for a frame that is not JSON.
func TestJSONWebSocketInBrowser(t *testing.T) {
	srv := startServer(t)
	mq := v5(t, srv, uniqueID("browser-mq"))
	mq.sub("page/#", 0)
	ctx := openPage(t, jsonWSPage, srv.Addr("http"))
	waitPageOut(t, ctx, "puback 2")
	mq.expect("page/out", "från sidan ✓ "+strings.Repeat("y", 70000))
	mq.pub("browser/a", 0, "héllo 🌍")
	mq.pub("browser/b", 0, strings.Repeat("z", 70000))
	mq.pub("browser/c", 0, "last")
	got := waitPageOut(t, ctx, "closed ")
	for _, want := range []string{"msg 8 héllo 🌍\n", "msg 70000 zzzzzzzz\n", "msg 4 last\n", "closed 1003\n"} {
		if !strings.Contains(got, want) {
			t.Fatalf("the page got %q, want a line %q", got, want)
		}
	}
}
