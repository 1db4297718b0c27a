// Command rpclat measures RPC round trips through a running tern with one caller: a service and
// a caller over mBus (-proto mbus: the service registers a command, the caller calls it), or over
// MQTT 5 (-proto mqtt5: the service serves $rpc/bench/echo, the caller publishes requests with a
// response topic). Each call waits for its reply before the next; it prints p50, p90, p99.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

func main() {
	proto := flag.String("proto", "mbus", "mbus or mqtt5")
	addr := flag.String("addr", "127.0.0.1:8000", "tern's mBus TCP or MQTT listener")
	n := flag.Int("n", 5000, "calls")
	size := flag.Int("size", 128, "payload bytes")
	flag.Parse()
	var lat []time.Duration
	var err error
	switch *proto {
	case "mbus":
		lat, err = mbusRun(*addr, *n, *size)
	case "mqtt5":
		lat, err = mqttRun(*addr, *n, *size)
	default:
		err = fmt.Errorf("unknown -proto %q", *proto)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rpclat:", err)
		os.Exit(1)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	fmt.Printf("%s: %d calls, p50 %.1f us, p90 %.1f us, p99 %.1f us\n", *proto, len(lat), q(0.5), q(0.9), q(0.99))
}

// mbusConn is a minimal mBus client: uncompressed frames of JSON.
type mbusConn struct {
	nc  net.Conn
	rd  *bufio.Reader
	seq int
}

func mbusDial(addr, id string) (*mbusConn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &mbusConn{nc: nc, rd: bufio.NewReader(nc)}
	c.send(map[string]any{"org.mbus.method.tag.type": "org.mbus.method.type.command", "org.mbus.method.tag.destination": "org.mbus.server",
		"org.mbus.method.tag.identifier": "command.create", "org.mbus.method.tag.sequence": c.next(),
		"org.mbus.method.tag.payload": map[string]any{"identifier": id}})
	if _, err := c.read(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *mbusConn) next() int { c.seq++; return c.seq }

func (c *mbusConn) send(m map[string]any) {
	b, _ := json.Marshal(m)
	// One write per frame, as a real client's buffered writer does: two would let the server wake
	// for the length alone.
	c.nc.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...))
}

func (c *mbusConn) read() (map[string]json.RawMessage, error) {
	var h [4]byte
	if _, err := io.ReadFull(c.rd, h[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(h[:]))
	if _, err := io.ReadFull(c.rd, b); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	return m, json.Unmarshal(b, &m)
}

func mbusRun(addr string, n, size int) ([]time.Duration, error) {
	svc, err := mbusDial(addr, "bench.svc")
	if err != nil {
		return nil, err
	}
	svc.send(map[string]any{"org.mbus.method.tag.type": "org.mbus.method.type.command", "org.mbus.method.tag.destination": "org.mbus.server",
		"org.mbus.method.tag.identifier": "command.register", "org.mbus.method.tag.sequence": svc.next(),
		"org.mbus.method.tag.payload": map[string]string{"command": "echo"}})
	if _, err := svc.read(); err != nil {
		return nil, err
	}
	go func() { // the service: answer every call with its payload
		for {
			m, err := svc.read()
			if err != nil {
				return
			}
			if string(m["org.mbus.method.tag.type"]) != `"org.mbus.method.type.command"` {
				continue
			}
			svc.send(map[string]any{"org.mbus.method.tag.type": "org.mbus.method.type.command", "org.mbus.method.tag.destination": "org.mbus.server",
				"org.mbus.method.tag.identifier": "command.result", "org.mbus.method.tag.sequence": svc.next(),
				"org.mbus.method.tag.payload": map[string]any{"org.mbus.method.tag.destination": m["org.mbus.method.tag.source"],
					"org.mbus.method.tag.identifier": "echo", "org.mbus.method.tag.sequence": m["org.mbus.method.tag.sequence"],
					"org.mbus.method.tag.status": 0, "org.mbus.method.tag.payload": m["org.mbus.method.tag.payload"]}})
		}
	}()
	caller, err := mbusDial(addr, "bench.caller")
	if err != nil {
		return nil, err
	}
	payload := map[string]string{"data": strings.Repeat("x", max(size-11, 0))}
	lat := make([]time.Duration, 0, n)
	for range n {
		seq := caller.next()
		start := time.Now()
		caller.send(map[string]any{"org.mbus.method.tag.type": "org.mbus.method.type.command", "org.mbus.method.tag.destination": "bench.svc",
			"org.mbus.method.tag.identifier": "echo", "org.mbus.method.tag.sequence": seq, "org.mbus.method.tag.timeout": 5000,
			"org.mbus.method.tag.payload": payload})
		for {
			m, err := caller.read()
			if err != nil {
				return nil, err
			}
			if string(m["org.mbus.method.tag.type"]) == `"org.mbus.method.type.result"` && string(m["org.mbus.method.tag.sequence"]) == fmt.Sprint(seq) {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

func mqttDial(addr, id string, handlers ...func(paho.PublishReceived) (bool, error)) (*paho.Client, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: handlers})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	return c, err
}

func mqttRun(addr string, n, size int) ([]time.Duration, error) {
	ctx := context.Background()
	var svc *paho.Client
	svc, err := mqttDial(addr, "bench-svc", func(pr paho.PublishReceived) (bool, error) {
		// Answer from the handler, as a NATS service answers from its message handler: a QoS 0
		// publish waits for no acknowledgement, so it cannot stall paho's receive loop.
		p := pr.Packet
		_, err := svc.Publish(ctx, &paho.Publish{Topic: p.Properties.ResponseTopic, Payload: p.Payload,
			Properties: &paho.PublishProperties{CorrelationData: p.Properties.CorrelationData}})
		return true, err
	})
	if err != nil {
		return nil, err
	}
	if _, err := svc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$rpc/bench/echo"}}}); err != nil {
		return nil, err
	}
	replies := make(chan string, 1)
	caller, err := mqttDial(addr, "bench-caller", func(pr paho.PublishReceived) (bool, error) {
		replies <- string(pr.Packet.Properties.CorrelationData)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	reply := "$response/bench-caller/r"
	if _, err := caller.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: reply}}}); err != nil {
		return nil, err
	}
	payload := []byte(strings.Repeat("x", size))
	lat := make([]time.Duration, 0, n)
	for i := range n {
		corr := fmt.Sprint(i)
		start := time.Now()
		if _, err := caller.Publish(ctx, &paho.Publish{Topic: "$rpc/bench/echo", Payload: payload,
			Properties: &paho.PublishProperties{ResponseTopic: reply, CorrelationData: []byte(corr)}}); err != nil {
			return nil, err
		}
		select {
		case got := <-replies:
			if got != corr {
				return nil, fmt.Errorf("reply %q to call %q", got, corr)
			}
		case <-time.After(5 * time.Second):
			return nil, fmt.Errorf("no reply to call %d", i)
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}
