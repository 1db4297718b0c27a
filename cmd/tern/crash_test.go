package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// TestCrashLosesNothingAcknowledged runs the real binary on a data directory, kills it with
// SIGKILL at random moments under load from QoS 1 publishers while a persistent-session
// subscriber comes and goes, restarts it each time, and checks that every message whose PUBACK a
// publisher received reached the subscriber at least once.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and runs the binary")
	}
	bin := buildTern(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	srv := startTernProcess(t, bin, dir, addr)

	// The kill times and the subscriber's comings and goings are random; TERNTEST_CRASH_SEED replays
	// a run.
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("TERNTEST_CRASH_SEED"); v != "" {
		if _, err := fmt.Sscan(v, &seed); err != nil {
			t.Fatalf("TERNTEST_CRASH_SEED: %v", err)
		}
	}
	t.Logf("seed %d (TERNTEST_CRASH_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	subRng := rand.New(rand.NewPCG(seed, 8))

	const publishers = 3
	rec := newReceipts()
	// The subscription exists (on disk) before anything is published; without it the test
	// would prove nothing.
	if err := subscribeOnce(addr, rec, 0, func() bool { return true }); err != nil {
		t.Fatalf("the first subscribe failed: %v (server log in %s)", err, srv.logPath)
	}
	var acked sync.Map // payload -> struct{}
	var nAcked atomic.Int64
	ackSeen := make(chan struct{}, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishLoop(addr, fmt.Sprintf("crash-pub-%d", p), stop, func(payload string) {
				acked.Store(payload, struct{}{})
				nAcked.Add(1)
				select {
				case ackSeen <- struct{}{}:
				default:
				}
			})
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		subscriberLoop(addr, rec, stop, subRng)
	}()

	kills := 5
	for i := range kills {
		// Make sure something was acknowledged in this round, so every kill lands on a server
		// that is busy, then let the load run a random while.
		before := nAcked.Load()
		busy := time.NewTimer(20 * time.Second)
		for nAcked.Load() < before+50 {
			select {
			case <-ackSeen:
				continue
			case <-busy.C:
				t.Fatalf("round %d: fewer than 50 publishes acknowledged in 20 s (server log in %s)", i+1, srv.logPath)
			}
		}
		busy.Stop()
		waitFor(time.Duration(100+rng.IntN(600)) * time.Millisecond)
		srv.kill(t)
		t.Logf("kill %d/%d after %d acknowledged in all", i+1, kills, nAcked.Load())
		srv = startTernProcess(t, bin, dir, addr)
	}
	close(stop)
	wg.Wait()

	// Drain: the subscriber resumes its session until it has everything acknowledged.
	want := 0
	missing := func() []string {
		var out []string
		acked.Range(func(k, _ any) bool {
			if !rec.has(k.(string)) {
				out = append(out, k.(string))
			}
			return true
		})
		return out
	}
	acked.Range(func(_, _ any) bool { want++; return true })
	drainDeadline := time.Now().Add(30 * time.Second)
	for len(missing()) > 0 && time.Now().Before(drainDeadline) {
		_ = subscribeOnce(addr, rec, 2*time.Second, func() bool { return len(missing()) == 0 })
	}
	lost := missing()
	delivered, dups := rec.counts()
	t.Logf("crash test: %d kills; acknowledged %d, of which delivered %d; received %d distinct messages "+
		"(unacknowledged ones may arrive too), %d duplicate deliveries; lost %d",
		kills, want, want-len(lost), delivered, dups, len(lost))
	if want == 0 {
		t.Fatal("nothing was acknowledged; the load never ran")
	}
	if len(lost) > 0 {
		if len(lost) > 10 {
			lost = lost[:10]
		}
		t.Fatalf("%d acknowledged messages were lost, e.g. %v (server log in %s)", len(missing()), lost, srv.logPath)
	}
	srv.stop(t)
}

// waitFor paces the load; it is not used to wait for anything to happen.
func waitFor(d time.Duration) { <-time.After(d) }

type receipts struct {
	mu   sync.Mutex
	seen map[string]int
	n    int
	new  chan struct{}
}

func newReceipts() *receipts { return &receipts{seen: map[string]int{}, new: make(chan struct{}, 1)} }

func (r *receipts) add(p string) {
	r.mu.Lock()
	r.seen[p]++
	r.n++
	r.mu.Unlock()
	select {
	case r.new <- struct{}{}:
	default:
	}
}

func (r *receipts) has(p string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[p] > 0
}

// counts returns distinct messages received and how many deliveries were repeats.
func (r *receipts) counts() (distinct, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen), r.n - len(r.seen)
}

// publishLoop publishes numbered QoS 1 messages, reconnecting whenever the server goes away, and
// reports each one the server acknowledged with success.
func publishLoop(addr, id string, stop <-chan struct{}, ok func(string)) {
	seq := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := dialV5(addr, id, true, nil)
		if err != nil {
			waitFor(20 * time.Millisecond)
			continue
		}
		for {
			select {
			case <-stop:
				_ = c.Disconnect(&paho.Disconnect{})
				return
			default:
			}
			seq++
			payload := fmt.Sprintf("%s/%d", id, seq)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := c.Publish(ctx, &paho.Publish{Topic: "crash/" + id, QoS: 1, Payload: []byte(payload)})
			cancel()
			if err != nil {
				break
			}
			if res.ReasonCode < 0x80 {
				ok(payload)
			}
		}
		_ = c.Disconnect(&paho.Disconnect{})
	}
}

// subscriberLoop keeps the persistent subscriber coming and going: online for a while, offline
// for a while, so messages both stream to it and queue for it.
func subscriberLoop(addr string, rec *receipts, stop <-chan struct{}, rng *rand.Rand) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		// Failures are expected here: the server is killed at random moments.
		_ = subscribeOnce(addr, rec, time.Duration(200+rng.IntN(500))*time.Millisecond, nil)
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(100+rng.IntN(400)) * time.Millisecond):
		}
	}
}

// subscribeOnce connects the subscriber's session for up to d, or until done says so, and
// reports why it could not connect or subscribe.
func subscribeOnce(addr string, rec *receipts, d time.Duration, done func() bool) error {
	c, err := dialV5(addr, "crash-sub", false, func(p string) { rec.add(p) })
	if err != nil {
		waitFor(20 * time.Millisecond)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "crash/#", QoS: 1}}})
	cancel()
	if err == nil {
		end := time.After(d)
	wait:
		for done == nil || !done() {
			select {
			case <-end:
				break wait
			case <-c.Done():
				break wait
			case <-rec.new:
			}
		}
	}
	_ = c.Disconnect(&paho.Disconnect{})
	return err
}

func dialV5(addr, id string, clean bool, onMsg func(string)) (*paho.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	cfg := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 5 * time.Second}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				onMsg(string(pr.Packet.Payload))
				return true, nil
			},
		}
	}
	c := paho.NewClient(cfg)
	expiry := uint32(3600)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if ack.ReasonCode != 0 {
		_ = conn.Close()
		return nil, fmt.Errorf("connack %d", ack.ReasonCode)
	}
	return c, nil
}

// ---- the server process ----

type ternProcess struct {
	cmd     *exec.Cmd
	logPath string
	done    chan error
}

func buildTern(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tern")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startTernProcess runs `tern serve` on dataDir with MQTT on addr; extra arguments follow the
// defaults (a later flag wins).
func startTernProcess(t *testing.T, bin, dataDir, addr string, extra ...string) *ternProcess {
	t.Helper()
	args := append([]string{"serve", "--mqtt", addr, "--http", "", "--unix", "",
		"--data-dir", dataDir, "--log-level", "info"}, extra...)
	return serveTern(t, bin, addr, nil, args...)
}

// serveTern starts the binary with args and env (added to this process's environment) and waits
// until it accepts connections on waitAddr. It is killed when the test ends if still running.
func serveTern(t *testing.T, bin, waitAddr string, env []string, args ...string) *ternProcess {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "tern.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &ternProcess{cmd: cmd, logPath: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	p.waitListening(t, waitAddr)
	return p
}

// waitListening waits (at most 30 s) until the process accepts TCP connections on addr, and fails
// the test if it exits first.
func (p *ternProcess) waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case err := <-p.done:
			log, _ := os.ReadFile(p.logPath)
			t.Fatalf("tern exited at start: %v\n%s", err, log)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tern did not listen on %s within 30s (log in %s)", addr, p.logPath)
		}
	}
}

func (p *ternProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-p.done
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("tern did not die of SIGKILL: %v", err)
	}
}

func (p *ternProcess) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Error("tern did not stop within 10s of SIGTERM")
	}
}
