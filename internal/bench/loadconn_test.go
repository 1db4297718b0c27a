package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A LoadConn subscribes, unsubscribes and counts what its filters still match; another one's
// batched publishes all arrive once flushed.
func TestLoadConnSubscribeUnsubscribeCount(t *testing.T) {
	srv := startTern(t)
	url := "unix://" + srv.Addr("unix")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := DialLoad(ctx, url, "load-sub", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Subscribe([]string{"a/+", "b/#"}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Unsubscribe([]string{"a/+"}); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	progress := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- sub.Count(&n, progress) }()

	pub, err := DialLoad(ctx, url, "load-pub", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	payload := make([]byte, 100)
	const each = 500 // 500 × ~110 bytes: more than one batch
	for i := 0; i < each; i++ {
		if err := pub.Publish("a/x", payload); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < each; i++ {
		if err := pub.Publish("b/y/z", payload); err != nil {
			t.Fatal(err)
		}
	}
	// The last one, after everything else from the same publisher: once it is in, so is any
	// a/x the broker wrongly delivered.
	if err := pub.Publish("b/end", nil); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	for n.Load() < each+1 {
		select {
		case <-progress:
		case err := <-done:
			t.Fatalf("counting ended after %d: %v", n.Load(), err)
		case <-ctx.Done():
			t.Fatalf("%d of %d arrived", n.Load(), each+1)
		}
	}
	if got := n.Load(); got != each+1 {
		t.Fatalf("counted %d, want %d (a/x after its unsubscribe?)", got, each+1)
	}
	sub.Close()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Count did not end after Close")
	}
}

func TestDialLoadNeedsATimeout(t *testing.T) {
	if _, err := DialLoad(context.Background(), "mqtt://127.0.0.1:1", "x", 0); err == nil {
		t.Fatal("no error")
	}
}
