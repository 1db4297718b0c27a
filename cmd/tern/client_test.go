package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
)

// startTern runs a whole tern in the test process with TCP, WebSocket and Unix listeners.
func startTern(t *testing.T) *server.Server {
	t.Helper()
	return servertest.Start(t)
}

func tcpURL(s *server.Server) string  { return "mqtt://" + s.Addr("mqtt") }
func wsURL(s *server.Server) string   { return "ws://" + s.Addr("http") + "/mqtt" }
func unixURL(s *server.Server) string { return "unix://" + s.Addr("unix") }

// newTestRoot builds a fresh command tree, so commands can run concurrently in one test.
func newTestRoot() *cobra.Command {
	root := &cobra.Command{Use: "tern", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newPubCmd(), newSubCmd(), newReqCmd(), newReplyCmd(), newBenchCmd(), newCallCmd(),
		newUserCmd(), newGroupCmd(), newGrantCmd(), newTokenCmd())
	root.SetGlobalNormalizationFunc(normalizeFlag)
	return root
}

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a command started in the background.
type running struct {
	ready  chan struct{}
	done   chan error
	stdout *syncBuffer
	stderr *syncBuffer
	cancel context.CancelFunc
}

// start runs a command in a goroutine. ready closes once it has subscribed.
func start(t *testing.T, stdin string, args ...string) *running {
	t.Helper()
	r := &running{ready: make(chan struct{}), done: make(chan error, 1), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	var once sync.Once
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	r.cancel = cancel
	ctx = withReady(ctx, func() { once.Do(func() { close(r.ready) }) })
	root := newTestRoot()
	root.SetArgs(args)
	root.SetOut(r.stdout)
	root.SetErr(r.stderr)
	root.SetIn(strings.NewReader(stdin))
	go func() { r.done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("command %v did not stop", args)
		}
	})
	return r
}

// waitReady waits for the command to subscribe, failing if it ends or the deadline passes.
func (r *running) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-r.ready:
	case err := <-r.done:
		r.done <- err
		t.Fatalf("command ended before it was ready: %v; stderr: %s", err, r.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("command not ready within 10s")
	}
}

// wait waits for the command to end and returns its error.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("command did not finish within 15s; stdout: %q stderr: %q", r.stdout.String(), r.stderr.String())
	}
	return nil
}

// run runs a command to completion.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	r := start(t, stdin, args...)
	err = r.wait(t)
	return r.stdout.String(), r.stderr.String(), err
}

func TestPubSubOverEveryTransport(t *testing.T) {
	srv := startTern(t)
	for name, url := range map[string]string{"tcp": tcpURL(srv), "unix": unixURL(srv), "ws": wsURL(srv)} {
		t.Run(name, func(t *testing.T) {
			topic := "cli/" + name
			sub := start(t, "", "sub", "--url", url, "-t", topic+"/#", "-C", "1")
			sub.waitReady(t)
			if _, stderr, err := run(t, "", "pub", "--url", url, "-t", topic+"/x", "-m", "hello "+name); err != nil {
				t.Fatalf("pub: %v (%s)", err, stderr)
			}
			if err := sub.wait(t); err != nil {
				t.Fatalf("sub: %v", err)
			}
			if got, want := sub.stdout.String(), topic+"/x hello "+name+"\n"; got != want {
				t.Fatalf("sub printed %q, want %q", got, want)
			}
		})
	}
}

func TestSubJSONCarriesProperties(t *testing.T) {
	srv := startTern(t)
	url := tcpURL(srv)
	sub := start(t, "", "sub", "--url", url, "-t", "j/#", "-q", "1", "-F", "json", "-C", "2")
	sub.waitReady(t)

	_, stderr, err := run(t, "", "pub", "--url", url, "-t", "j/text", "-q", "1", "-m", `{"t":21.5}`,
		"--user-property", "origin=cron", "--user-property", "k=v=w", "--content-type", "application/json",
		"--expiry", "30s", "--response-topic", "j/answers", "--correlation-data", "c-42")
	if err != nil {
		t.Fatalf("pub: %v (%s)", err, stderr)
	}
	bin := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(bin, []byte{0xff, 0x00, 0xfe}, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, "", "pub", "--url", url, "-t", "j/bin", "-f", bin); err != nil {
		t.Fatalf("pub -f: %v (%s)", err, stderr)
	}
	if err := sub.wait(t); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(sub.stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 JSON lines, got %q", sub.stdout.String())
	}
	var m1, m2 jsonMessage
	if err := json.Unmarshal([]byte(lines[0]), &m1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &m2); err != nil {
		t.Fatal(err)
	}
	if m1.Topic != "j/text" || m1.Payload == nil || *m1.Payload != `{"t":21.5}` || m1.QoS != 1 || m1.Retain {
		t.Errorf("first message: %+v", m1)
	}
	wantUser := []jsonUserProp{{"origin", "cron"}, {"k", "v=w"}}
	if len(m1.UserProperties) != 2 || m1.UserProperties[0] != wantUser[0] || m1.UserProperties[1] != wantUser[1] {
		t.Errorf("user properties %+v, want %+v", m1.UserProperties, wantUser)
	}
	if m1.ContentType != "application/json" || m1.ResponseTopic != "j/answers" {
		t.Errorf("content type %q, response topic %q", m1.ContentType, m1.ResponseTopic)
	}
	if m1.CorrelationData == nil || *m1.CorrelationData != "c-42" {
		t.Errorf("correlation data %v", m1.CorrelationData)
	}
	if m1.MessageExpiry == nil || *m1.MessageExpiry == 0 || *m1.MessageExpiry > 30 {
		t.Errorf("message expiry %v, want 1..30", m1.MessageExpiry)
	}
	if m2.Topic != "j/bin" || m2.Payload != nil || !bytes.Equal(m2.PayloadBase64, []byte{0xff, 0x00, 0xfe}) || m2.QoS != 0 {
		t.Errorf("binary message: %+v", m2)
	}
	// The raw line must name the fields as documented.
	for _, key := range []string{`"topic"`, `"payload"`, `"qos"`, `"retain"`, `"user_properties"`,
		`"content_type"`, `"response_topic"`, `"correlation_data"`, `"message_expiry"`} {
		if !strings.Contains(lines[0], key) {
			t.Errorf("JSON line lacks %s: %s", key, lines[0])
		}
	}
	if !strings.Contains(lines[1], `"payload_base64":"/wD+"`) {
		t.Errorf("binary payload not base64 in %s", lines[1])
	}
}

func TestSubCountExitsAfterN(t *testing.T) {
	srv := startTern(t)
	url := unixURL(srv)
	sub := start(t, "", "sub", "--url", url, "-t", "n/+", "-q", "1", "-C", "3", "--payload-only")
	sub.waitReady(t)
	if _, stderr, err := run(t, "one\ntwo\nthree\nfour\nfive\n", "pub", "--url", url, "-t", "n/lines", "-q", "1", "-l"); err != nil {
		t.Fatalf("pub -l: %v (%s)", err, stderr)
	}
	if err := sub.wait(t); err != nil {
		t.Fatal(err)
	}
	if got := sub.stdout.String(); got != "one\ntwo\nthree\n" {
		t.Fatalf("sub -C 3 printed %q", got)
	}
}

func TestSubRawAndStdin(t *testing.T) {
	srv := startTern(t)
	url := tcpURL(srv)
	sub := start(t, "", "sub", "--url", url, "-t", "raw", "-F", "raw", "-C", "1")
	sub.waitReady(t)
	if _, _, err := run(t, "line one\nline two\n", "pub", "--url", url, "-t", "raw", "-s"); err != nil {
		t.Fatal(err)
	}
	if err := sub.wait(t); err != nil {
		t.Fatal(err)
	}
	if got := sub.stdout.String(); got != "line one\nline two\n" {
		t.Fatalf("raw output %q", got)
	}
}

func TestSubWaitEnds(t *testing.T) {
	srv := startTern(t)
	_, _, err := run(t, "", "sub", "--url", tcpURL(srv), "-t", "quiet", "-W", "100ms")
	if err != nil {
		t.Fatalf("sub -W without -C should exit 0: %v", err)
	}
	_, _, err = run(t, "", "sub", "--url", tcpURL(srv), "-t", "quiet", "-W", "100ms", "-C", "1")
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("sub -W -C with no message: %v, want timed out", err)
	}
}

func TestSubRefusedFilterFails(t *testing.T) {
	srv := startTern(t)
	_, _, err := run(t, "", "sub", "--url", tcpURL(srv), "-t", "ok/#", "-t", "bad/#/filter", "-W", "5s")
	if err == nil || !strings.Contains(err.Error(), "bad/#/filter") || !strings.Contains(err.Error(), "topic filter invalid") {
		t.Fatalf("err = %v, want the refused filter named", err)
	}
}

func TestPubNoMatchingSubscribersWarns(t *testing.T) {
	srv := startTern(t)
	_, stderr, err := run(t, "", "pub", "--url", tcpURL(srv), "-t", "nobody/home", "-q", "1", "-m", "x")
	if err != nil {
		t.Fatalf("pub: %v", err)
	}
	if !strings.Contains(stderr, "no matching subscribers") {
		t.Fatalf("stderr %q lacks the warning", stderr)
	}
}

func TestRetainedAndRetainHandling(t *testing.T) {
	srv := startTern(t)
	url := tcpURL(srv)
	if _, _, err := run(t, "", "pub", "--url", url, "-t", "ret/a", "-r", "-q", "1", "-m", "kept"); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "", "sub", "--url", url, "-t", "ret/#", "-C", "1", "-F", "json", "-W", "5s")
	if err != nil {
		t.Fatal(err)
	}
	var m jsonMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil || !m.Retain || *m.Payload != "kept" {
		t.Fatalf("retained message %q (%v)", out, err)
	}
	// Retain handling 2: no retained message on subscribe.
	if _, _, err := run(t, "", "sub", "--url", url, "-t", "ret/#", "--retain-handling", "2", "-C", "1", "-W", "200ms"); err == nil {
		t.Fatal("retain handling 2 still delivered the retained message")
	}
}

func TestReqReplyRoundTrip(t *testing.T) {
	srv := startTern(t)
	for name, url := range map[string]string{"tcp": tcpURL(srv), "ws": wsURL(srv)} {
		t.Run(name, func(t *testing.T) {
			svc := "svc/" + name
			rep := start(t, "", "reply", "--url", url, "-t", svc, "-m", "pong", "-C", "1")
			rep.waitReady(t)
			out, stderr, err := run(t, "", "req", "--url", url, "-t", svc, "-m", "ping", "--timeout", "5s")
			if err != nil {
				t.Fatalf("req: %v (%s)", err, stderr)
			}
			if out != "pong\n" {
				t.Fatalf("req printed %q", out)
			}
			if err := rep.wait(t); err != nil {
				t.Fatalf("reply: %v", err)
			}
		})
	}
}

func TestReqTimesOut(t *testing.T) {
	srv := startTern(t)
	url := tcpURL(srv)
	// A subscriber that never answers: the broker has a match, so only the timeout ends req.
	silent := start(t, "", "sub", "--url", url, "-t", "svc/silent")
	silent.waitReady(t)
	begin := time.Now()
	_, _, err := run(t, "", "req", "--url", url, "-t", "svc/silent", "-m", "hello?", "--timeout", "300ms")
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want timed out", err)
	}
	if el := time.Since(begin); el > 5*time.Second {
		t.Fatalf("req took %s to time out", el)
	}
}

func TestReqNoResponders(t *testing.T) {
	srv := startTern(t)
	_, _, err := run(t, "", "req", "--url", tcpURL(srv), "-t", "svc/none", "-m", "x", "--timeout", "5s")
	if err == nil || !strings.Contains(err.Error(), "no responders") {
		t.Fatalf("err = %v, want no responders", err)
	}
}

// fakeRefusingBroker accepts one MQTT 5 client and answers its QoS 1 PUBLISH with a PUBACK
// carrying code: tern has no authorization yet, so this is how "not authorized" is exercised.
func fakeRefusingBroker(t *testing.T, code packet.ReasonCode) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := packet.NewReader(c, 0, 0)
		for {
			typ, flags, body, err := r.Next()
			if err != nil {
				return
			}
			var out []byte
			switch typ {
			case packet.CONNECT:
				out, _ = (&packet.Connack{}).Append(nil, packet.V5)
			case packet.PUBLISH:
				var p packet.Publish
				if err := p.Decode(flags, body, packet.V5); err != nil {
					return
				}
				out, _ = (&packet.Puback{PacketID: p.PacketID, Reason: code}).Append(nil, packet.V5)
			case packet.DISCONNECT:
				return
			}
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}()
	return "mqtt://" + ln.Addr().String()
}

func TestPubRefusedPubackFails(t *testing.T) {
	url := fakeRefusingBroker(t, packet.NotAuthorized)
	_, _, err := run(t, "", "pub", "--url", url, "-t", "secret", "-q", "1", "-m", "x")
	if err == nil || !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("err = %v, want not authorized", err)
	}
}

func TestClientFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"pub", "-m", "x"},
		{"pub", "-t", "a/+", "-m", "x"},
		{"pub", "-t", "a", "-q", "3"},
		{"pub", "-t", "a", "-m", "x", "-s"},
		{"pub", "-t", "a", "--user-property", "novalue"},
		{"pub", "-t", "a", "--expiry", "1500ms"},
		{"pub", "-t", "a", "--url", "http://x"},
		{"sub"},
		{"sub", "-t", "a", "-F", "yaml"},
		{"sub", "-t", "a", "--retain-handling", "3"},
		{"req", "-t", "a", "--timeout", "0s"},
		{"reply", "-m", "x"},
	} {
		if _, _, err := run(t, "", args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// writeSelfSigned writes a certificate for 127.0.0.1 and its key, returning their paths.
func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tern test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestPubSubOverTLS(t *testing.T) {
	certFile, keyFile := writeSelfSigned(t)
	cfg := config.Default()
	cfg.DataDir = t.TempDir() // not ./tern-data in the package directory
	cfg.Listen = config.Listen{MQTTTLS: "127.0.0.1:0", HTTPS: "127.0.0.1:0"}
	cfg.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	srv, err := server.Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	for name, url := range map[string]string{
		"mqtts": "mqtts://" + srv.Addr("mqtt_tls"),
		"wss":   "wss://" + srv.Addr("https") + "/mqtt",
	} {
		t.Run(name, func(t *testing.T) {
			sub := start(t, "", "sub", "--url", url, "--cafile", certFile, "-t", "tls/#", "-C", "1")
			sub.waitReady(t)
			if _, stderr, err := run(t, "", "pub", "--url", url, "--insecure", "-t", "tls/x", "-m", "secret"); err != nil {
				t.Fatalf("pub --insecure: %v (%s)", err, stderr)
			}
			if err := sub.wait(t); err != nil {
				t.Fatal(err)
			}
			if got := sub.stdout.String(); got != "tls/x secret\n" {
				t.Fatalf("sub printed %q", got)
			}
			// Without the CA the certificate is not trusted.
			if _, _, err := run(t, "", "pub", "--url", url, "-t", "tls/x", "-m", "x", "--timeout", "3s"); err == nil {
				t.Fatal("an untrusted certificate was accepted")
			}
		})
	}
}

func TestBenchCommand(t *testing.T) {
	srv := startTern(t)
	out, stderr, err := run(t, "", "bench", "--url", unixURL(srv), "-p", "2", "-s", "2", "-q", "1",
		"-n", "500", "-d", "10s", "--mqtt-version", "5", "--json")
	if err != nil {
		t.Fatalf("bench: %v (%s)", err, stderr)
	}
	var r struct {
		Sent, Delivered, Expected, Lost, Duplicates uint64
		Latency                                     map[string]float64 `json:"latency_us"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if r.Sent != 1000 || r.Expected != 2000 || r.Delivered != 2000 || r.Lost != 0 || r.Duplicates != 0 {
		t.Fatalf("bench result %s", out)
	}
	if r.Latency["p99"] <= 0 || r.Latency["p50"] > r.Latency["p99"] {
		t.Fatalf("latency %v", r.Latency)
	}

	out, _, err = run(t, "", "bench", "--reflector", "-n", "2000")
	if err != nil || !strings.Contains(out, "delivered     2000 of 2000 expected") || !strings.Contains(out, "latency µs") {
		t.Fatalf("bench --reflector: %v\n%s", err, out)
	}

	out, _, err = run(t, "", "bench", "--url", tcpURL(srv), "--idle-conns", "50", "--hold", "10ms")
	if err != nil || !strings.Contains(out, "ready: 50 connections") || !strings.Contains(out, "0 dropped") {
		t.Fatalf("bench --idle-conns: %v\n%s", err, out)
	}
}

// TestCall: tern call reaches a service (an MQTT 5 responder via tern reply), lists services with
// "tern call tern services", and fails at once on a procedure nobody serves.
func TestCall(t *testing.T) {
	srv := startTern(t)
	url := tcpURL(srv)
	svc := start(t, "", "reply", "--url", url, "-t", "$rpc/calc/add", "-m", `{"sum":3}`)
	svc.waitReady(t)
	if out, stderr, err := run(t, "", "call", "--url", url, "calc", "add", "-m", `{"a":1,"b":2}`); err != nil || out != "{\"sum\":3}\n" {
		t.Fatalf("call: %q %v %s", out, err, stderr)
	}
	if out, _, err := run(t, "", "call", "--url", url, "tern", "services"); err != nil || !strings.Contains(out, `"procedure":"add"`) {
		t.Fatalf("services: %q %v", out, err)
	}
	if _, _, err := run(t, "", "call", "--url", url, "--timeout", "30s", "calc", "mul"); err == nil || !strings.Contains(err.Error(), "no responders") {
		t.Fatalf("unserved: %v", err)
	}
}

// A payload over the server's maximum packet size is refused with the limit named, before it is
// sent (it used to fail with "use of closed network connection").
func TestPubOverMaximumPacketSize(t *testing.T) {
	srv := servertest.Start(t, func(c *config.Config) { c.MQTT.MaxPacketSize = 1024 })
	f := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(f, []byte(strings.Repeat("x", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "", "pub", "--url", tcpURL(srv), "-t", "big", "-q", "1", "-f", f)
	if err == nil || !strings.Contains(err.Error(), "maximum packet size of 1024") {
		t.Fatalf("err = %v, want the server's maximum packet size named", err)
	}
}
