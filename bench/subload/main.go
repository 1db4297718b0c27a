//go:build unix

// Command subload opens a bounded number of MQTT connections, subscribes each to many distinct
// filters (the mix of internal/topic's churn benchmark: exact, + and #), prints "ready" with the
// time it took, and holds the connections until it is killed, so bench/subscriptions.sh can read
// the broker's RSS per subscription. Those connections and the publisher below speak tern's
// codec (internal/bench.LoadConn), so the tool is not the ceiling of what it measures.
//
// With --churn D it then waits for SIGUSR1 (the script reads the RSS first) and runs two phases
// of D each, "steady" and "churn". In both, one publisher sends QoS 0 messages to topics that each match exactly one of the
// subscriptions in place (round robin over the connections), at most --window of them sent and
// not yet delivered; in the churn phase --churn-conns other connections (paho clients) subscribe
// and unsubscribe fresh filters in a loop meanwhile, --churn-batch per packet, each waiting for
// its acknowledgement. It prints a line of key=value figures per phase (delivered msg/s, churn
// ops/s), starting with the phase's name, and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/bench"
)

// options are subload's flags.
type options struct {
	url         string
	conns, per  int
	batch       int
	churn       time.Duration
	churnConns  int
	churnBatch  int
	window      int
	rate        int
	size        int
	startSignal time.Duration
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("subload", flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "tcp://127.0.0.1:1883", "broker")
	fs.IntVar(&o.conns, "conns", 100, "connections holding the subscriptions")
	fs.IntVar(&o.per, "filters", 10000, "filters per connection")
	fs.IntVar(&o.batch, "batch", 100, "filters per SUBSCRIBE packet")
	fs.DurationVar(&o.churn, "churn", 0, "after ready and SIGUSR1, publish and churn for this long, then exit (0: hold until killed)")
	fs.IntVar(&o.churnConns, "churn-conns", 4, "with --churn: connections that subscribe and unsubscribe in a loop")
	fs.IntVar(&o.churnBatch, "churn-batch", 10, "with --churn: filters per SUBSCRIBE and UNSUBSCRIBE of the churners")
	fs.IntVar(&o.window, "window", 1000, "with --churn: messages the publisher may have sent and not yet seen delivered")
	fs.IntVar(&o.rate, "rate", 0, "with --churn: messages per second the publisher sends at most, on a schedule (0: as fast as --window allows)")
	fs.IntVar(&o.size, "size", 64, "with --churn: payload bytes")
	fs.DurationVar(&o.startSignal, "wait", 10*time.Minute, "with --churn: longest wait for SIGUSR1 after ready")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.conns < 1 || o.per < 1 || o.batch < 1:
		return o, errors.New("--conns, --filters and --batch must be positive")
	case o.churn < 0:
		return o, errors.New("--churn must not be negative")
	case o.churn > 0 && (o.churnConns < 0 || o.churnBatch < 1 || o.window < 1 || o.size < 0 || o.startSignal <= 0 || o.rate < 0):
		return o, errors.New("--churn-conns and --rate must not be negative; --churn-batch, --window and --wait must be positive")
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "subload:", err)
		os.Exit(2)
	}
	// Signals are caught from the start, so a SIGUSR1 sent just after "ready" is not lost; SIGTERM
	// and interrupt end the process whatever it is doing (subscribing, holding, churning).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt, syscall.SIGUSR1)
	usr1 := make(chan struct{})
	var subscribed atomic.Int64
	go func() {
		var once sync.Once
		for s := range sigs {
			if s != syscall.SIGUSR1 {
				if n := subscribed.Load(); n < int64(o.conns*o.per) {
					fmt.Fprintf(os.Stderr, "stopped with %d of %d subscriptions taken\n", n, o.conns*o.per)
				}
				os.Exit(0)
			}
			once.Do(func() { close(usr1) })
		}
	}()
	var delivered atomic.Int64
	progress := make(chan struct{}, 1)
	start := time.Now()
	held := make([]*bench.LoadConn, 0, o.conns)
	for c := 0; c < o.conns; c++ {
		lc, err := dialLoad(o.url, "subload-"+strconv.Itoa(c))
		if err != nil {
			fail("connect:", err)
		}
		held = append(held, lc)
		fs := make([]string, 0, o.batch)
		for b := 0; b < o.per; b += o.batch {
			fs = fs[:0]
			for i := b; i < b+o.batch && i < o.per; i++ {
				fs = append(fs, filter(c*o.per+i))
			}
			if err := lc.Subscribe(fs); err != nil {
				fail("subscribe:", err)
			}
			subscribed.Add(int64(len(fs)))
		}
		go func() { _ = lc.Count(&delivered, progress) }()
	}
	fmt.Printf("ready %d subscriptions in %.1fs\n", o.conns*o.per, time.Since(start).Seconds())
	if o.churn == 0 {
		select {} // held until a signal ends the process
	}
	wait := time.NewTimer(o.startSignal)
	select {
	case <-usr1:
	case <-wait.C:
		fail("churn:", errors.New("no SIGUSR1 within --wait"))
	}
	// First the publisher alone, for the rate without churn on the same subscriptions, then
	// with the churners.
	steady := o
	steady.churnConns = 0
	for _, ph := range []options{steady, o} {
		r, err := runChurn(ph, &delivered, progress)
		if err != nil {
			fail(r.label+":", err)
		}
		fmt.Println(r)
	}
	for _, lc := range held {
		lc.Close()
	}
}

// dialLoad opens one of tern's load connections, bounded by connectTimeout.
func dialLoad(url, id string) (*bench.LoadConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	return bench.DialLoad(ctx, url, id, connectTimeout)
}

// connectTimeout bounds each connect, acknowledgement wait and write.
const connectTimeout = 30 * time.Second

// connect opens one paho connection (a churner).
func connect(url, id string) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(false).
		SetConnectTimeout(10 * time.Second).SetKeepAlive(60 * time.Second)
	cl := mqtt.NewClient(o)
	if t := cl.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		if t.Error() == nil {
			return nil, errors.New("timed out")
		}
		return nil, t.Error()
	}
	return cl, nil
}

func fail(what string, err error) {
	fmt.Fprintln(os.Stderr, what, err)
	os.Exit(1)
}
