package tlsrec

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOpenSSLClientEachSuite runs each TLS 1.3 cipher suite against another implementation,
// OpenSSL's s_client (Go's client always picks AES-128-GCM on hardware with AES): the client
// updates its key, asking for an update in return ("K"), sends a line, and reads the server's
// answer, which goes out after the server's own KeyUpdate; at the end of its input it sends
// close_notify, which the server reads as the end of the stream.
func TestOpenSSLClientEachSuite(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed (.ci/run installs it)")
	}
	for _, s := range suites {
		name := tls.CipherSuiteName(s.id)
		t.Run(name, func(t *testing.T) {
			addr, conns := listen(t, serverConfig(t))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-tls1_3",
				"-ciphersuites", name, "-quiet", "-no_ign_eof")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			errPipe, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			// s_client says KEYUPDATE on its standard error once it has sent one; a line typed
			// with the command would be dropped, so the data waits for that.
			var stderr lockedText
			keyUpdated := make(chan struct{})
			errDone := make(chan struct{})
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() {
				defer close(errDone)
				sc := bufio.NewScanner(errPipe)
				for sc.Scan() {
					stderr.add(sc.Text())
					if sc.Text() == "KEYUPDATE" {
						close(keyUpdated)
					}
				}
			}()
			defer func() { _ = stdin.Close(); <-errDone; _ = cmd.Wait() }()
			var srv *Conn
			select {
			case srv = <-conns:
			case <-ctx.Done():
				t.Fatalf("openssl did not connect: %s", stderr.String())
			}
			defer srv.Close()
			_ = srv.SetDeadline(time.Now().Add(15 * time.Second))
			if err := srv.Handshake(); err != nil {
				t.Fatalf("handshake: %v (%s)", err, stderr.String())
			}
			if !srv.TookOver() || srv.ConnectionState().CipherSuite != s.id {
				t.Fatalf("took over %v, suite %s", srv.TookOver(), tls.CipherSuiteName(srv.ConnectionState().CipherSuite))
			}
			before := srv.in.dir.secret
			if _, err := io.WriteString(stdin, "K\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-keyUpdated:
			case <-ctx.Done():
				t.Fatal("openssl sent no KeyUpdate")
			}
			if _, err := io.WriteString(stdin, "ping\n"); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(srv)
			line, err := r.ReadString('\n')
			if err != nil || line != "ping\n" {
				t.Fatalf("server read %q, %v (%s)", line, err, stderr.String())
			}
			if srv.in.dir.secret == before || !srv.keyUpdateDue.Load() {
				t.Fatal("the client's KeyUpdate (update requested) was not followed")
			}
			outBefore := srv.out.dir.secret
			if _, err := srv.Write([]byte("pong\n")); err != nil {
				t.Fatal(err)
			}
			if srv.out.dir.secret == outBefore {
				t.Fatal("the server did not update its key in return")
			}
			got, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || got != "pong\n" {
				t.Fatalf("openssl read %q, %v (%s)", got, err, stderr.String())
			}
			_ = stdin.Close()
			if _, err := r.ReadString('\n'); err != io.EOF {
				t.Fatalf("after the client's close_notify: %v, want EOF", err)
			}
		})
	}
}

// lockedText collects lines written on one goroutine for messages on another.
type lockedText struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedText) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *lockedText) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
