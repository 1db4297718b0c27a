//go:build unix

// Command uplinkload drives bench/uplink-outage.sh: the store-and-forward scenario of a site
// router and a designated router (DR), for tern's uplink or a Mosquitto bridge alike.
//
// It starts the site router (-site-cmd, run by sh in a process group of its own) with its link to
// the DR going through a TCP proxy of its own (-proxy-listen forwards to -upstream). QoS 1
// publishers at the site publish numbered messages at -rate in all for -duration; a persistent
// QoS 1 subscriber at the DR records what arrives. The link is cut (the proxy drops its
// connections and refuses new ones) from -cut-at to -restore-at, and the site router is killed
// with SIGKILL at -kill-at and started again. After the publishers stop it waits until every
// acknowledged message has arrived, or until nothing arrives for -settle, and prints one JSON
// line: acknowledged, delivered (acknowledged and arrived), lost, duplicates (repeat deliveries),
// out of order (per publisher, first arrivals with a number below an earlier one), the rate the
// backlog built up at and the rate it drained at (the arrivals from the first after the restore
// until everything acknowledged before the restore had arrived; the time to that first arrival,
// the reconnect, is reported apart).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/tcpproxy"
)

type options struct {
	name, siteCmd, siteMQTT, drMQTT    string
	proxyListen, upstream              string
	rate                               float64
	publishers                         int
	duration, cutAt, restoreAt, killAt time.Duration
	settle                             time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.name, "name", "tern", "what is measured, for the output")
	flag.StringVar(&o.siteCmd, "site-cmd", "", "shell command that runs the site router in the foreground")
	flag.StringVar(&o.siteMQTT, "site-mqtt", "", "the site router's MQTT listener (publishers connect here)")
	flag.StringVar(&o.drMQTT, "dr-mqtt", "", "the DR's MQTT listener (the subscriber connects here)")
	flag.StringVar(&o.proxyListen, "proxy-listen", "", "where the proxy listens (the site's link points here)")
	flag.StringVar(&o.upstream, "upstream", "", "where the proxy forwards (the DR's listener for sites)")
	flag.Float64Var(&o.rate, "rate", 1000, "messages per second, all publishers together")
	flag.IntVar(&o.publishers, "publishers", 50, "QoS 1 publishers (each waits for its acknowledgement before the next publish)")
	flag.DurationVar(&o.duration, "duration", 120*time.Second, "how long the publishers publish")
	flag.DurationVar(&o.cutAt, "cut-at", 20*time.Second, "when the link goes down")
	flag.DurationVar(&o.restoreAt, "restore-at", 80*time.Second, "when the link comes back")
	flag.DurationVar(&o.killAt, "kill-at", 50*time.Second, "when the site router is killed -9 and restarted (0: never)")
	flag.DurationVar(&o.settle, "settle", 60*time.Second, "after publishing, give up waiting once nothing arrived for this long")
	flag.Parse()
	if o.siteCmd == "" || o.siteMQTT == "" || o.drMQTT == "" || o.proxyListen == "" || o.upstream == "" {
		log.Fatal("-site-cmd, -site-mqtt, -dr-mqtt, -proxy-listen and -upstream are needed")
	}
	res, err := run(o)
	if err != nil {
		log.Fatal(err)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// result is what a run prints.
type result struct {
	Name         string  `json:"name"`
	Acknowledged int     `json:"acknowledged"`
	Delivered    int     `json:"delivered"`
	Lost         int     `json:"lost"`
	Duplicates   int     `json:"duplicates"`
	OutOfOrder   int     `json:"out_of_order"`
	Unacked      int     `json:"arrived_unacknowledged"`
	BuildRate    float64 `json:"backlog_build_rate"`
	Backlog      int     `json:"backlog"`
	// RelinkSeconds is from the restore to the first arrival: the reconnect's back-off and
	// handshake, not part of the drain.
	RelinkSeconds float64 `json:"relink_seconds"`
	DrainSeconds  float64 `json:"drain_seconds"`
	DrainRate     float64 `json:"drain_rate"`
	DrainRatio    float64 `json:"drain_ratio"`
	Complete      bool    `json:"complete"`
}

func run(o options) (result, error) {
	px, err := tcpproxy.Listen(o.proxyListen, o.upstream)
	if err != nil {
		return result{}, err
	}
	defer px.Stop()
	site := &siteProc{cmd: o.siteCmd}
	if err := site.start(o.siteMQTT); err != nil {
		return result{}, err
	}
	defer site.kill()

	rec := newRecord()
	sub := &subscriber{addr: o.drMQTT, rec: rec}
	if err := sub.start(); err != nil {
		return result{}, err
	}
	defer sub.stop()

	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range o.publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publish(o.siteMQTT, fmt.Sprintf("p%02d", p), o.rate/float64(o.publishers), stop, rec.acked)
		}()
	}
	var restoredAt time.Time
	var ackedAtCut, ackedAtRestore int
	at := func(d time.Duration) <-chan time.Time { return time.After(time.Until(start.Add(d))) }
	cut, restore, kill, end := at(o.cutAt), at(o.restoreAt), at(o.killAt), at(o.duration)
	if o.killAt <= 0 {
		kill = nil
	}
	for end != nil {
		select {
		case <-cut:
			ackedAtCut = rec.ackedCount()
			px.Cut()
			log.Printf("%s: link cut at %s (%d acknowledged)", o.name, time.Since(start).Round(time.Second), ackedAtCut)
			cut = nil
		case <-kill:
			site.kill()
			log.Printf("%s: site killed -9 at %s", o.name, time.Since(start).Round(time.Second))
			if err := site.start(o.siteMQTT); err != nil {
				return result{}, err
			}
			log.Printf("%s: site restarted at %s", o.name, time.Since(start).Round(time.Second))
			kill = nil
		case <-restore:
			ackedAtRestore = rec.ackedCount()
			restoredAt = time.Now()
			rec.markRestore()
			px.Restore()
			log.Printf("%s: link restored at %s (%d acknowledged)", o.name, time.Since(start).Round(time.Second), ackedAtRestore)
			restore = nil
		case <-end:
			end = nil
		}
	}
	close(stop)
	wg.Wait()
	log.Printf("%s: publishing stopped at %s; waiting for the deliveries", o.name, time.Since(start).Round(time.Second))
	complete := rec.waitAll(o.settle)
	r := rec.result(o.name)
	r.Complete = complete
	built := o.restoreAt - o.cutAt
	r.BuildRate = float64(ackedAtRestore-ackedAtCut) / built.Seconds()
	if n, relink, d, ok := rec.drain(restoredAt); ok {
		r.Backlog, r.RelinkSeconds, r.DrainSeconds = n, relink.Seconds(), d.Seconds()
		if d > 0 {
			r.DrainRate = float64(n) / d.Seconds()
		}
		if r.BuildRate > 0 {
			r.DrainRatio = r.DrainRate / r.BuildRate
		}
	}
	return r, nil
}

// siteProc is the site router's process.
type siteProc struct {
	cmd string
	p   *exec.Cmd
}

func (s *siteProc) start(mqttAddr string) error {
	c := exec.Command("sh", "-c", "exec "+s.cmd)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return err
	}
	s.p = c
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cl, err := dialMQTT(mqttAddr, "probe", true, nil); err == nil {
			_ = cl.Disconnect(&paho.Disconnect{})
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the site router did not listen on %s within 30 s", mqttAddr)
}

// kill sends SIGKILL to the site router's process group and waits for it.
func (s *siteProc) kill() {
	if s.p == nil {
		return
	}
	_ = syscall.Kill(-s.p.Process.Pid, syscall.SIGKILL)
	_ = s.p.Wait()
	s.p = nil
}

// publish publishes bldg1/load/<id>/<n> at QoS 1 at rate per second, reconnecting whenever the
// site goes away, and reports each acknowledged one. A publisher that falls behind does not
// catch up in a burst.
func publish(addr, id string, rate float64, stop <-chan struct{}, acked func(string, int)) {
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	n := 0
	var c *paho.Client
	defer func() {
		if c != nil {
			_ = c.Disconnect(&paho.Disconnect{})
		}
	}()
	for {
		if d := time.Until(next); d > 0 {
			select {
			case <-stop:
				return
			case <-time.After(d):
			}
		} else {
			select {
			case <-stop:
				return
			default:
			}
			next = time.Now()
		}
		next = next.Add(interval)
		if c == nil {
			var err error
			if c, err = dialMQTT(addr, "pub-"+id, true, nil); err != nil {
				c = nil
				continue
			}
		}
		n++
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("bldg1/load/%s/%d", id, n), QoS: 1, Payload: make([]byte, 64)})
		cancel()
		if err != nil {
			_ = c.Disconnect(&paho.Disconnect{})
			c = nil
			continue
		}
		if res.ReasonCode < 0x80 {
			acked(id, n)
		}
	}
}
