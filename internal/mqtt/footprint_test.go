package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/tlsrec"
)

// rawIdleClients opens n MQTT 3.1.1 connections to addr as bare file descriptors (no net.Conn,
// no goroutine, nothing on this process's heap but the slice), each connected with keepAlive
// and subscribed to its own topic, and returns their descriptors. The caller closes them.
func rawIdleClients(t testing.TB, addr string, n int, keepAlive uint16) []int {
	t.Helper()
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	fds := make([]int, 0, n)
	t.Cleanup(func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	})
	var buf [64]byte
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	for i := range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		fds = append(fds, fd)
		// Blocking calls, bounded by socket timeouts rather than deadlines on a net.Conn.
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		if err := connectRetrying(fd, sa); err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		out, _ := (&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: keepAlive,
			ClientID: []byte(fmt.Sprintf("idle-%d", i))}).Append(nil, packet.V311)
		out, _ = (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
			{Filter: []byte(fmt.Sprintf("idle/%d", i))}}}).Append(out, packet.V311)
		if _, err := retryEINTR(func() (int, error) { return unix.Write(fd, out) }); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		// CONNACK (4 bytes) and SUBACK (5 bytes).
		for got := 0; got < 9; {
			k, err := retryEINTR(func() (int, error) { return unix.Read(fd, buf[got:]) })
			if err != nil || k <= 0 {
				t.Fatalf("connection %d: CONNACK/SUBACK: %v", i, err)
			}
			got += k
		}
	}
	return fds
}

// connectRetrying is a blocking connect(2) that the runtime's signals may interrupt: the
// connection then completes in the background, and poll(2) waits for it.
func connectRetrying(fd int, sa unix.Sockaddr) error {
	err := unix.Connect(fd, sa)
	if err != unix.EINTR {
		return err
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if _, err := retryEINTR(func() (int, error) { return unix.Poll(pfd, 5000) }); err != nil {
		return err
	}
	if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
		return fmt.Errorf("connect: %v %v", err, unix.Errno(e))
	}
	return nil
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// footprint is what the process holds, after a collection.
type footprint struct {
	heap, stacks uint64
	// retained is what the runtime holds from the system and has not returned (Sys less
	// HeapReleased): what resident memory follows, garbage collector headroom included.
	retained uint64
	// rss is the process's resident memory (VmRSS; 0 where /proc is not there).
	rss        uint64
	goroutines int
	// mallocs and allocated count every allocation so far, freed or not: what the connections
	// cost the collector while they opened, and what their transient objects leave in the heap.
	mallocs, allocated uint64
	// classes are the runtime's /memory/classes/... metrics: where the memory it holds goes.
	classes map[string]uint64
}

// memoryClasses reads every /memory/classes/... metric of runtime/metrics but the total.
func memoryClasses() map[string]uint64 {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") && d.Name != "/memory/classes/total:bytes" {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	m := make(map[string]uint64, len(samples))
	for _, s := range samples {
		name := strings.TrimSuffix(strings.TrimPrefix(s.Name, "/memory/classes/"), ":bytes")
		m[name] = s.Value.Uint64()
	}
	return m
}

// classesPer formats the memory classes that moved between two footprints, in bytes per
// connection, largest first.
func classesPer(after, before footprint, n int) string {
	type class struct {
		name string
		per  float64
	}
	var moved []class
	for name, v := range after.classes {
		if d := (float64(v) - float64(before.classes[name])) / float64(n); d >= 1 || d <= -1 {
			moved = append(moved, class{name, d})
		}
	}
	sort.Slice(moved, func(i, j int) bool { return moved[i].per > moved[j].per })
	parts := make([]string, len(moved))
	for i, c := range moved {
		parts[i] = fmt.Sprintf("%s %.0f", c.name, c.per)
	}
	return strings.Join(parts, ", ")
}

// vmRSS reads the process's resident memory from /proc/self/status, in bytes (0 if unknown).
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func measureFootprint() footprint {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return footprint{heap: ms.HeapInuse, stacks: ms.StackInuse, retained: ms.Sys - ms.HeapReleased,
		rss: vmRSS(), goroutines: runtime.NumGoroutine(), mallocs: ms.Mallocs, allocated: ms.TotalAlloc,
		classes: memoryClasses()}
}

// TestIdleFootprint is a measurement, not a check: with TERNTEST_FOOTPRINT=N it opens N idle
// subscribed connections (keep alive 60 s) to an in-process server and logs the heap and stack
// bytes and goroutines each holds (detached, see TERNTEST_FOOTPRINT_DETACH below; with
// TERNTEST_FOOTPRINT_AUTH=1 each client has a principal of its own, see footprintBroker);
// TERNTEST_FOOTPRINT_PROFILE=FILE also writes a heap profile of
// what is live then (go tool pprof -sample_index=inuse_space FILE). The profile in
// docs/decisions.md ("Idle connections wait on epoll") comes from it.
func TestIdleFootprint(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TERNTEST_FOOTPRINT"))
	if n <= 0 {
		t.Skip("set TERNTEST_FOOTPRINT=N to measure N idle connections")
	}
	if os.Getenv("TERNTEST_FOOTPRINT_PROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	// The connections detach from Go's socket objects at their first park, as connections
	// quiet for mqtt.detach_idle do; TERNTEST_FOOTPRINT_DETACH=0 measures them attached.
	detach := footprintDetach(t)
	_, addr := startFaceWith(t, footprintBroker(t), nil, func(c *Config) { c.DetachIdle = detach })
	before := measureFootprint()
	fds := rawIdleClients(t, addr, n, 60)
	// Let every connection go quiet: the hand-off to the idle state happens after handoffAfter.
	time.Sleep(handoffAfter + 500*time.Millisecond)
	after := measureFootprint()
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(len(fds)) }
	t.Logf("%d idle connections: heap %.0f B, stacks %.0f B, retained %.0f B, RSS %.0f B, goroutines %.3f per connection",
		len(fds), per(after.heap, before.heap), per(after.stacks, before.stacks), per(after.retained, before.retained),
		per(after.rss, before.rss), float64(after.goroutines-before.goroutines)/float64(len(fds)))
	t.Logf("opening them allocated %.1f objects, %.0f B per connection (the test's clients included)",
		per(after.mallocs, before.mallocs), per(after.allocated, before.allocated))
	t.Logf("the runtime's memory classes, B per connection: %s", classesPer(after, before, len(fds)))
	if f := os.Getenv("TERNTEST_FOOTPRINT_PROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIdleFootprintTLS is TestIdleFootprint over TLS (startTLSFace: tlsrec.NewListener, TLS
// 1.3, an ECDSA certificate). The clients run in a child process (this test binary running
// TestIdleTLSClientsChild), so that their tls.Conns are not on the heap measured here; with
// TERNTEST_TLS_CURVES=x25519 they offer only X25519 (a small ClientHello).
func TestIdleFootprintTLS(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TERNTEST_FOOTPRINT"))
	if n <= 0 {
		t.Skip("set TERNTEST_FOOTPRINT=N to measure N idle TLS connections")
	}
	if os.Getenv("TERNTEST_FOOTPRINT_PROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	// As in TestIdleFootprint, the sockets detach at their first park unless
	// TERNTEST_FOOTPRINT_DETACH says otherwise (0: they stay attached).
	detach := footprintDetach(t)
	srv, addr := startTLSFaceOn(t, tlsrec.NewListener, func(c *Config) { c.DetachIdle = detach })
	before := measureFootprint()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestIdleTLSClientsChild$")
	cmd.Env = append(os.Environ(), "TERNTEST_TLS_CHILD="+addr, "TERNTEST_FOOTPRINT="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	// The child prints "ready" once every connection is open and subscribed.
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if sc.Text() == "ready" {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatal("the client process did not open its connections")
	}
	// Every connection is parked when the server holds (almost) no goroutine for them.
	waitGoroutines(t, before.goroutines, n/100)
	detached := 0
	if detach > 0 {
		deadline := time.Now().Add(30 * time.Second)
		for detached = countTLSDetached(srv); detached < n*99/100 && time.Now().Before(deadline); detached = countTLSDetached(srv) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	after := measureFootprint()
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	t.Logf("%d idle TLS connections (%d detached): heap %.0f B, stacks %.0f B, retained %.0f B, RSS %.0f B, goroutines %.3f per connection",
		n, detached, per(after.heap, before.heap), per(after.stacks, before.stacks), per(after.retained, before.retained),
		per(after.rss, before.rss), float64(after.goroutines-before.goroutines)/float64(n))
	if f := os.Getenv("TERNTEST_FOOTPRINT_PROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// footprintBroker is the core TestIdleFootprint measures: an open broker, or with
// TERNTEST_FOOTPRINT_AUTH=1 one whose clients are each authorized by a principal of their own
// (anonymous clients with a device's grants in a tree named by their client id, each compiled
// for its client as a password user's would be).
func footprintBroker(t *testing.T) broker.Config {
	t.Helper()
	cfg := broker.DefaultConfig()
	if os.Getenv("TERNTEST_FOOTPRINT_AUTH") != "1" {
		return cfg
	}
	var grants []auth.Grant
	for _, g := range []string{"publish:devices/%c/#", "subscribe:devices/%c/#", "subscribe:idle/+", "retain:devices/%c/state"} {
		gr, err := auth.ParseGrant(g)
		if err != nil {
			t.Fatal(err)
		}
		grants = append(grants, gr)
	}
	a, err := auth.New(auth.Config{AllowAnonymous: true, AnonymousGrants: grants}, auth.NewMemStore(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = a
	return cfg
}

// footprintDetach is the DetachIdle of a footprint measurement: TERNTEST_FOOTPRINT_DETACH, 1 ms
// when unset.
func footprintDetach(t *testing.T) time.Duration {
	v := os.Getenv("TERNTEST_FOOTPRINT_DETACH")
	if v == "" {
		return time.Millisecond
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("TERNTEST_FOOTPRINT_DETACH: %v", err)
	}
	return d
}

// countTLSDetached counts srv's connections whose socket (under TLS or a WebSocket) is detached.
func countTLSDetached(srv *Server) int {
	n := 0
	for _, c := range srv.conns.All() {
		if p := c.rd.parkConn(); p != nil && p.Detached() {
			n++
		}
	}
	return n
}

// TestIdleTLSClientsChild is TestIdleFootprintTLS's client process: it opens the connections,
// prints "ready" and holds them until its standard input closes.
func TestIdleTLSClientsChild(t *testing.T) {
	addr := os.Getenv("TERNTEST_TLS_CHILD")
	if addr == "" {
		t.Skip("run by TestIdleFootprintTLS")
	}
	n, _ := strconv.Atoi(os.Getenv("TERNTEST_FOOTPRINT"))
	cfg := &tls.Config{InsecureSkipVerify: true}
	if os.Getenv("TERNTEST_TLS_CURVES") == "x25519" {
		// A ClientHello without the post-quantum key share, as most device TLS stacks send:
		// it is about a fifth of the size, and the server's handshake buffers keep its size.
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	conns := make([]*tls.Conn, 0, n)
	for i := range n {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		rc := &rawClient{t: t, nc: c, rd: packet.NewReader(c, 0, 0), v: packet.V311}
		rc.connect(fmt.Sprintf("idle-%d", i), 60)
		rc.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(fmt.Sprintf("idle/%d", i))}}})
		if _, ok := rc.must(5 * time.Second).(*packet.Suback); !ok {
			t.Fatalf("client %d: no SUBACK", i)
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		_ = c.Close()
	}
}
