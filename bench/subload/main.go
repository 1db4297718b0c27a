// Command subload opens a bounded number of MQTT connections, subscribes each to many distinct
// filters (the mix of internal/topic's churn benchmark: exact, + and #), prints "ready" with the
// time it took, and holds the connections until it is killed, so bench/subscriptions.sh can read
// the broker's RSS per subscription.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

var kinds = []string{"temp", "humidity", "pressure", "status", "alarm", "cmd", "config", "battery", "location", "firmware"}

// filter is the i-th distinct filter; the same mix as BenchmarkChurn1M.
func filter(i int) string {
	id := strconv.Itoa(i)
	switch i % 10 {
	case 0, 1, 2, 3, 4:
		return "device/" + id + "/" + kinds[i%len(kinds)]
	case 5, 6:
		return "device/" + id + "/+/status"
	case 7:
		return "site/" + id + "/#"
	case 8:
		return "site/" + strconv.Itoa(i%1000) + "/floor/" + id + "/+"
	default:
		return "fleet/+/" + id + "/#"
	}
}

func main() {
	url := flag.String("url", "tcp://127.0.0.1:1883", "broker")
	conns := flag.Int("conns", 100, "connections")
	per := flag.Int("filters", 10000, "filters per connection")
	batch := flag.Int("batch", 100, "filters per SUBSCRIBE packet")
	flag.Parse()
	start := time.Now()
	for c := 0; c < *conns; c++ {
		o := mqtt.NewClientOptions().AddBroker(*url).SetClientID("subload-" + strconv.Itoa(c)).
			SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetKeepAlive(60 * time.Second)
		cl := mqtt.NewClient(o)
		if t := cl.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			fmt.Fprintln(os.Stderr, "connect:", t.Error())
			os.Exit(1)
		}
		for b := 0; b < *per; b += *batch {
			m := map[string]byte{}
			for i := b; i < b+*batch && i < *per; i++ {
				m[filter(c**per+i)] = 0
			}
			if t := cl.SubscribeMultiple(m, nil); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
				fmt.Fprintln(os.Stderr, "subscribe:", t.Error())
				os.Exit(1)
			}
		}
	}
	fmt.Printf("ready %d subscriptions in %.1fs\n", *conns**per, time.Since(start).Seconds())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	<-ch
}
