// Command ssefanout measures SSE fan-out: it opens -subs Server-Sent Events streams on one
// filter of a running tern, publishes -n messages over HTTP (paced by -rate per second, 0: as fast
// as answered), and reports deliveries per second across all streams, what was lost, and the
// server's RSS (read from /proc/<-pid>/status) before and with the streams open.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "tern's HTTP listener")
	subs := flag.Int("subs", 1000, "SSE subscribers")
	n := flag.Int("n", 1000, "messages to publish")
	rate := flag.Int("rate", 0, "messages per second (0: as fast as answered)")
	pid := flag.Int("pid", 0, "tern's process id, for its RSS")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rssIdle := rss(*pid)
	tr := &http.Transport{MaxIdleConnsPerHost: *subs + 16, MaxConnsPerHost: 0}
	hc := &http.Client{Transport: tr}
	var got atomic.Int64
	var ready, done sync.WaitGroup
	total := int64(*subs) * int64(*n)
	finished := make(chan struct{})
	for i := 0; i < *subs; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", *base+"/v1/sub/bench/sse", nil)
			resp, err := hc.Do(req)
			if err != nil {
				fmt.Fprintln(os.Stderr, "subscribe:", err)
				ready.Done()
				return
			}
			defer resp.Body.Close()
			rd := bufio.NewReaderSize(resp.Body, 64<<10)
			first := true
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				if first && strings.HasPrefix(line, ": subscribed") {
					first = false
					ready.Done()
				}
				if strings.HasPrefix(line, "data: ") && got.Add(1) == total {
					close(finished)
				}
			}
		}()
	}
	ready.Wait()
	rssSubs := rss(*pid)
	start := time.Now()
	var tick <-chan time.Time
	if *rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(*rate))
		defer t.Stop()
		tick = t.C
	}
	body := strings.Repeat("x", 128)
	for i := 0; i < *n; i++ {
		if tick != nil {
			<-tick
		}
		resp, err := hc.Post(*base+"/v1/pub/bench/sse", "application/octet-stream", strings.NewReader(body))
		if err != nil {
			fmt.Fprintln(os.Stderr, "publish:", err)
			os.Exit(1)
		}
		resp.Body.Close()
	}
	pubDone := time.Since(start)
	rssPeak := rss(*pid)
	select {
	case <-finished:
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	delivered := got.Load()
	fmt.Printf("subscribers %d, published %d in %.2fs, delivered %d of %d in %.2fs: %.0f deliveries/s, lost %d\n",
		*subs, *n, pubDone.Seconds(), delivered, total, elapsed.Seconds(), float64(delivered)/elapsed.Seconds(), total-delivered)
	fmt.Printf("tern RSS: idle %.1f MB, with %d streams %.1f MB, after publishing %.1f MB\n", rssIdle, *subs, rssSubs, rssPeak)
	cancel()
	done.Wait()
}

// rss reads VmRSS of pid in MB (0 if unknown).
func rss(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}
