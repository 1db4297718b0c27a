//go:build unix

// Command failoverload drives the failover part of bench/cluster.sh, for a tern cluster or a NATS
// cluster alike (MQTT 3.1.1 through paho.mqtt.golang, which both speak).
//
// QoS 1 publishers on every node (-pubs, -per-node each) publish numbered messages, each waiting
// for its PUBACK (-ack-timeout) before the next, paced at -rate per publisher; a persistent QoS 1
// subscriber (Clean Session 0) on -sub records what arrives. At -kill-at the process -kill-pid is
// killed with SIGKILL and a probe on -probe (a survivor) publishes QoS 1 in a loop, each attempt
// bounded by -probe-timeout (reconnecting when its connection is gone), until the first PUBACK:
// that time after the kill is the figure. Publishing stops at -duration; then it waits until every
// acknowledged message has arrived, or nothing arrived for -settle, and prints one JSON line:
// acknowledged, delivered (acknowledged and arrived), lost (acknowledged and never arrived).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

type options struct {
	name, pubs, sub, probe   string
	perNode, killPID         int
	rate                     float64
	duration, killAt, settle time.Duration
	ackTimeout, probeTimeout time.Duration
	probeGiveUp              time.Duration
}

// record is what was acknowledged and what arrived, keyed "publisher number".
type record struct {
	mu       sync.Mutex
	acked    map[string]bool
	arrived  map[string]bool
	last     time.Time
	attempts int
}

func (r *record) ack(k string) { r.mu.Lock(); r.acked[k] = true; r.mu.Unlock() }

func (r *record) got(k string) {
	r.mu.Lock()
	r.arrived[k] = true
	r.last = time.Now()
	r.mu.Unlock()
}

// missing counts the acknowledged messages that have not arrived.
func (r *record) missing() (acked, missing int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.acked {
		if !r.arrived[k] {
			missing++
		}
	}
	return len(r.acked), missing
}

func client(addr, id string, clean bool) mqtt.Client {
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectTimeout(2 * time.Second).SetKeepAlive(10 * time.Second).
		SetOrderMatters(false).SetWriteTimeout(2 * time.Second)
	return mqtt.NewClient(o)
}

func connect(c mqtt.Client, d time.Duration) bool {
	t := c.Connect()
	return t.WaitTimeout(d) && t.Error() == nil
}

func main() {
	var o options
	flag.StringVar(&o.name, "name", "tern", "what is measured, for the output")
	flag.StringVar(&o.pubs, "pubs", "", "comma-separated MQTT host:port of every node (publishers on each)")
	flag.StringVar(&o.sub, "sub", "", "MQTT host:port of a survivor for the persistent subscriber")
	flag.StringVar(&o.probe, "probe", "", "MQTT host:port of a survivor for the probe")
	flag.IntVar(&o.perNode, "per-node", 2, "QoS 1 publishers per node")
	flag.IntVar(&o.killPID, "kill-pid", 0, "process killed with SIGKILL at -kill-at")
	flag.Float64Var(&o.rate, "rate", 100, "messages per second per publisher (at most)")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long the publishers publish")
	flag.DurationVar(&o.killAt, "kill-at", 5*time.Second, "when the kill happens")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "after publishing, give up once nothing arrived for this long")
	flag.DurationVar(&o.ackTimeout, "ack-timeout", 2*time.Second, "a publisher's wait for a PUBACK")
	flag.DurationVar(&o.probeTimeout, "probe-timeout", 250*time.Millisecond, "the probe's wait for a PUBACK")
	flag.DurationVar(&o.probeGiveUp, "probe-give-up", 60*time.Second, "the probe gives up this long after the kill")
	flag.Parse()
	if o.pubs == "" || o.sub == "" || o.probe == "" || o.killPID <= 0 || o.killAt >= o.duration {
		log.Fatal("need -pubs, -sub, -probe, -kill-pid, and -kill-at before -duration")
	}
	rec := &record{acked: map[string]bool{}, arrived: map[string]bool{}}
	subID := fmt.Sprintf("fo-%s-sub-%d", o.name, os.Getpid())

	// The subscriber's session is persistent: it reconnects to the same survivor and resumes.
	so := mqtt.NewClientOptions().AddBroker("tcp://" + o.sub).SetClientID(subID).SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(500 * time.Millisecond).SetConnectTimeout(2 * time.Second).
		SetKeepAlive(10 * time.Second).SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { rec.got(string(m.Payload())) })
	so.SetOnConnectHandler(func(c mqtt.Client) { c.Subscribe("fo/#", 1, nil) })
	sc := mqtt.NewClient(so)
	if !connect(sc, 10*time.Second) {
		log.Fatal("subscriber cannot connect")
	}
	if t := sc.Subscribe("fo/#", 1, nil); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		log.Fatal("subscriber cannot subscribe")
	}

	start := time.Now()
	stop := start.Add(o.duration)
	var wg sync.WaitGroup
	var pubErrs, ackedAfterKill atomic.Int64
	var killed atomic.Bool
	for ni, addr := range strings.Split(o.pubs, ",") {
		for i := 0; i < o.perNode; i++ {
			id := fmt.Sprintf("fo-%s-p%d-%d-%d", o.name, ni+1, i, os.Getpid())
			wg.Add(1)
			go func(addr, id string) {
				defer wg.Done()
				c := client(addr, id, true)
				gap := time.Duration(float64(time.Second) / o.rate)
				for n := 0; time.Now().Before(stop); n++ {
					if !c.IsConnectionOpen() {
						c.Disconnect(0)
						c = client(addr, id, true)
						if !connect(c, time.Second) {
							pubErrs.Add(1)
							time.Sleep(100 * time.Millisecond) // pacing of a load tool, not synchronisation
							continue
						}
					}
					k := id + " " + strconv.Itoa(n)
					t := c.Publish("fo/"+id, 1, false, k)
					if t.WaitTimeout(o.ackTimeout) && t.Error() == nil {
						rec.ack(k)
						if killed.Load() {
							ackedAfterKill.Add(1)
						}
					} else {
						pubErrs.Add(1)
					}
					time.Sleep(gap)
				}
				c.Disconnect(100)
			}(addr, id)
		}
	}

	// The probe: one QoS 1 publish to check it works, then the kill, then the loop.
	pc := client(o.probe, fmt.Sprintf("fo-%s-probe-%d", o.name, os.Getpid()), true)
	if !connect(pc, 10*time.Second) {
		log.Fatal("probe cannot connect")
	}
	if t := pc.Publish("fo/probe", 1, false, "before"); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		log.Fatal("probe: no PUBACK before the kill")
	}
	time.Sleep(time.Until(start.Add(o.killAt)))
	if err := syscall.Kill(o.killPID, syscall.SIGKILL); err != nil {
		log.Fatalf("kill %d: %v", o.killPID, err)
	}
	t0 := time.Now()
	killed.Store(true)
	firstAck := time.Duration(-1)
	attempts := 0
	for time.Since(t0) < o.probeGiveUp {
		attempts++
		if !pc.IsConnectionOpen() {
			pc.Disconnect(0)
			pc = client(o.probe, fmt.Sprintf("fo-%s-probe-%d", o.name, os.Getpid()), true)
			if !connect(pc, o.probeTimeout*4) {
				time.Sleep(o.probeTimeout / 5)
				continue
			}
		}
		t := pc.Publish("fo/probe", 1, false, "after")
		if t.WaitTimeout(o.probeTimeout) && t.Error() == nil {
			firstAck = time.Since(t0)
			break
		}
	}
	pc.Disconnect(100)
	wg.Wait()

	// Wait for the acknowledged messages, or until nothing arrived for -settle.
	rec.mu.Lock()
	rec.last = time.Now()
	rec.mu.Unlock()
	for {
		_, miss := rec.missing()
		rec.mu.Lock()
		idle := time.Since(rec.last)
		rec.mu.Unlock()
		if miss == 0 || idle > o.settle {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	acked, miss := rec.missing()
	sc.Unsubscribe("fo/#").WaitTimeout(2 * time.Second)
	sc.Disconnect(100)
	out := map[string]any{
		"name": o.name, "first_ack_after_kill_ms": firstAck.Milliseconds(), "probe_attempts": attempts,
		"probe_timeout_ms": o.probeTimeout.Milliseconds(), "acknowledged": acked, "acknowledged_after_kill": ackedAfterKill.Load(), "delivered": acked - miss,
		"lost": miss, "publish_failures": pubErrs.Load(), "publishers": o.perNode * len(strings.Split(o.pubs, ",")),
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
