//go:build linux

// Command sockcost measures what Go's net package costs per accepted TCP connection, against
// holding the bare descriptor (accept4): it opens -n loopback connections to itself (the client
// ends are bare descriptors, so they cost nothing on the Go heap), accepts them one way or the
// other, returns free memory to the OS, and prints the growth of the heap, of the runtime's
// memory outside the heap (OtherSys: the netpoller's pollDesc, finalizer records) and of GC
// metadata, and of resident memory, per connection. It is the yardstick for replacing net.Conn
// under idle connections with descriptors of tern's own.
//
//	go run ./bench/sockcost -n 5000
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	n := flag.Int("n", 5000, "connections (each costs two descriptors)")
	flag.Parse()
	for _, mode := range []string{"net.TCPConn", "descriptor"} {
		if err := measure(mode, *n); err != nil {
			fmt.Fprintln(os.Stderr, mode+":", err)
			os.Exit(1)
		}
	}
}

func measure(mode string, n int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	lf, err := ln.(*net.TCPListener).File() // a blocking duplicate, for accept4
	if err != nil {
		return err
	}
	defer lf.Close()
	lfd := int(lf.Fd())

	var before, after runtime.MemStats
	debug.FreeOSMemory()
	runtime.ReadMemStats(&before)
	rss0 := rssKiB()
	conns := make([]net.Conn, 0, n)
	fds := make([]int, 0, 2*n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	for range n {
		cfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fds = append(fds, cfd)
		if err := syscall.Connect(cfd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		if mode == "net.TCPConn" {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			conns = append(conns, c)
			continue
		}
		fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
	}
	debug.FreeOSMemory()
	runtime.ReadMemStats(&after)
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	fmt.Printf("%-12s heap %5.0f B  outside the heap %5.0f B  GC metadata %4.0f B  resident %5.0f B per connection\n",
		mode, per(after.HeapInuse, before.HeapInuse), per(after.OtherSys, before.OtherSys),
		per(after.GCSys, before.GCSys), per(rssKiB()*1024, rss0*1024))
	return nil
}

// rssKiB is this process's resident memory (VmRSS).
func rssKiB() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kib, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kib
		}
	}
	return 0
}
