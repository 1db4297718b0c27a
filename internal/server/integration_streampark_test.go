package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/config"
)

// TestStreamsParkOverHTTP1: SSE and NDJSON streams over HTTP/1.1 leave net/http once their
// header is out and park: they are counted parked, deliveries reach them, keep-alives go out
// while they are parked, the response is not chunked (its body ends with the connection), a
// reconnecting EventSource's Last-Event-ID still skips what it saw, and when the clients leave
// nothing is left counted.
func TestStreamsParkOverHTTP1(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.HTTP.Heartbeat = 200 * time.Millisecond })
	base := "http://" + srv.Addr("http")
	sse, resp := openStream(t, base+"/v1/sub/park/%23?session=park-sse", "text/event-stream")
	if resp.ProtoMajor != 1 || len(resp.TransferEncoding) != 0 || !resp.Close {
		t.Fatalf("SSE response %s, transfer encoding %v, close %v: want HTTP/1.1, not chunked, closing", resp.Proto, resp.TransferEncoding, resp.Close)
	}
	nd, _ := openStream(t, base+"/v1/sub/park/%23", "application/x-ndjson")
	waitSubscriptions(t, srv, 2)
	parked := func(n float64) func() bool {
		return func() bool { return metric(t, srv, "tern_http_connections_parked") == n }
	}
	eventually(t, waitTimeout, "both streams parked", parked(2))

	mq := v5(t, srv, uniqueID("park-pub"))
	var lastID string
	for i := range 3 {
		mq.pub("park/x", 1, fmt.Sprint("m", i))
		lastID = nextLine(t, sse, "id: ")
		if data := nextLine(t, sse, "data: "); !strings.Contains(data, fmt.Sprintf(`"payload":"m%d"`, i)) {
			t.Fatalf("SSE event %d: %s", i, data)
		}
		if line := nextLine(t, nd, "{"); !strings.Contains(line, fmt.Sprintf(`"payload":"m%d"`, i)) {
			t.Fatalf("NDJSON line %d: {%s", i, line)
		}
		eventually(t, waitTimeout, "both streams parked again", parked(2))
	}
	// Keep-alives while parked: a comment for SSE, an empty line for NDJSON.
	if c := nextLine(t, sse, ": keep-alive"); c != "" {
		t.Fatalf("SSE keep-alive %q", c)
	}
	if line, err := nd.ReadString('\n'); err != nil || line != "\n" {
		t.Fatalf("NDJSON keep-alive %q, %v", line, err)
	}

	// The SSE client leaves and comes back on its session with Last-Event-ID: what it saw is
	// not sent again, what came meanwhile is.
	_ = resp.Body.Close()
	eventually(t, waitTimeout, "the SSE stream gone", parked(1))
	mq.pub("park/x", 1, "while away")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/sub/park/%23?session=park-sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", lastID)
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Body.Close()
	if data := nextLine(t, bufio.NewReader(again.Body), "data: "); !strings.Contains(data, `"payload":"while away"`) {
		t.Fatalf("after reconnecting: %s, want the message published while away first", data)
	}
	_ = again.Body.Close()
	eventually(t, waitTimeout, "one stream left", func() bool { return srv.HTTP.Stats().Streams.Load() == 1 })
	// The NDJSON stream's body ends when the server closes: at shutdown, cleanly.
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, nd); done <- err }()
	_ = srv.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("NDJSON body at shutdown ended with %v, want its clean end", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the NDJSON stream did not end at shutdown")
	}
	if n := srv.HTTP.Stats().Streams.Load(); n != 0 {
		t.Fatalf("%d streams counted after shutdown", n)
	}
}
