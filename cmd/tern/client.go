package main

// The MQTT 5 command-line client shared by pub, sub, req and reply: connection flags, dialing any
// URL scheme (see internal/mqttclient) and handing the connection to paho.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/mqttclient"
)

// clientFlags are the connection flags every client command takes.
type clientFlags struct {
	url       string
	id        string
	username  string
	password  string
	cafile    string
	cert, key string
	insecure  bool
	keepalive time.Duration
	timeout   time.Duration
	verbose   bool
}

// register adds the flags to fs. A command that has its own --timeout (req) passes
// withTimeout=false and sets f.timeout itself.
func (f *clientFlags) register(fs *pflag.FlagSet, withTimeout bool) {
	fs.StringVar(&f.url, "url", mqttclient.DefaultURL,
		"broker URL: mqtt://host:port, mqtts://, ws://host:port/mqtt, wss://, unix:///path/to/sock")
	fs.StringVarP(&f.id, "id", "i", "", "client identifier (default: tern-<command>-<random>)")
	fs.StringVarP(&f.username, "username", "u", "", "user name")
	fs.StringVarP(&f.password, "password", "P", "", "password or token (visible to other local users; prefer $TERN_PASSWORD)")
	fs.StringVar(&f.cafile, "cafile", "", "PEM file of certificate authorities to trust for mqtts:// and wss://")
	fs.StringVar(&f.cert, "cert", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&f.key, "key", "", "the client certificate's private key (PEM)")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify the server certificate (testing only)")
	fs.DurationVar(&f.keepalive, "keepalive", 60*time.Second, "keep alive interval (whole seconds; 0 disables)")
	if withTimeout {
		fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "connect timeout")
	}
	fs.BoolVar(&f.verbose, "verbose", false, "report progress on stderr")
}

// session is a connected paho client.
type session struct {
	c     *paho.Client
	ack   *paho.Connack
	lost  chan error // receives why the connection ended, if the server ended it
	flags *clientFlags
}

// connect dials, sends CONNECT (MQTT 5, clean start) and waits for CONNACK. Handlers get every
// PUBLISH the client receives; they run one at a time, in order.
func (f *clientFlags) connect(ctx context.Context, cmd *cobra.Command, handlers ...func(paho.PublishReceived) (bool, error)) (*session, error) {
	if f.keepalive < 0 || f.keepalive > 65535*time.Second {
		return nil, errors.New("--keepalive must be between 0 and 65535s")
	}
	timeout := f.timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ep, err := mqttclient.Parse(f.url)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := ep.Dial(dctx, mqttclient.Options{CAFile: f.cafile, Insecure: f.insecure, CertFile: f.cert, KeyFile: f.key})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", ep, err)
	}
	// paho writes from several goroutines; TLS and WebSocket connections need writes serialised.
	nc = packets.NewThreadSafeConn(nc)
	id := f.id
	if id == "" {
		id = "tern-" + cmd.Name() + "-" + randomHex(6)
	}
	s := &session{lost: make(chan error, 1), flags: f}
	report := func(err error) {
		select {
		case s.lost <- err:
		default:
		}
	}
	s.c = paho.NewClient(paho.ClientConfig{
		ClientID:          id,
		Conn:              nc,
		OnPublishReceived: handlers,
		PacketTimeout:     timeout,
		OnClientError:     func(err error) { report(err) },
		OnServerDisconnect: func(d *paho.Disconnect) {
			msg := packet.ReasonCode(d.ReasonCode).String()
			if d.Properties != nil && d.Properties.ReasonString != "" {
				msg += ": " + d.Properties.ReasonString
			}
			report(errors.New("server disconnected: " + msg))
		},
	})
	cp := &paho.Connect{
		ClientID:   id,
		KeepAlive:  uint16(f.keepalive / time.Second),
		CleanStart: true,
	}
	if f.username != "" {
		cp.Username, cp.UsernameFlag = f.username, true
	}
	password := cmp.Or(f.password, os.Getenv("TERN_PASSWORD"))
	if password != "" {
		cp.Password, cp.PasswordFlag = []byte(password), true
	}
	ack, err := s.c.Connect(dctx, cp)
	if err != nil {
		_ = nc.Close()
		if ack != nil && ack.ReasonCode >= 0x80 {
			msg := packet.ReasonCode(ack.ReasonCode).String()
			if ack.Properties != nil && ack.Properties.ReasonString != "" {
				msg += ": " + ack.Properties.ReasonString
			}
			return nil, fmt.Errorf("connection refused: %s", msg)
		}
		return nil, fmt.Errorf("connecting to %s: %w", ep, err)
	}
	s.ack = ack
	f.logf(cmd, "connected to %s as %s", ep, id)
	return s, nil
}

// close sends DISCONNECT and waits for the client to shut down.
func (s *session) close() {
	done := make(chan struct{})
	go func() {
		_ = s.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

func (f *clientFlags) logf(cmd *cobra.Command, format string, args ...any) {
	if f.verbose {
		fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...)
	}
}

// commandContext is the command's context, cancelled by SIGINT or SIGTERM.
func commandContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// readyKey carries a func called once a command is ready to receive (subscribed): tests use it
// to start publishing without sleeping.
type readyKey struct{}

// withReady returns ctx with a readiness callback for sub, req and reply.
func withReady(ctx context.Context, ready func()) context.Context {
	return context.WithValue(ctx, readyKey{}, ready)
}

func signalReady(ctx context.Context) {
	if f, ok := ctx.Value(readyKey{}).(func()); ok && f != nil {
		f()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// reasonError turns a failure reason code (>= 0x80) from an acknowledgement into an error
// naming it, with the server's reason string when it gave one.
func reasonError(code byte, reasonString string) error {
	msg := packet.ReasonCode(code).String()
	if reasonString != "" {
		msg += " (" + reasonString + ")"
	}
	return errors.New(msg)
}

// payloadFlags choose where a published message comes from (pub and req).
type payloadFlags struct {
	message  string
	file     string
	stdin    bool
	lines    bool
	hasLines bool // the command offers -l
}

func (p *payloadFlags) register(fs *pflag.FlagSet, withLines bool) {
	fs.StringVarP(&p.message, "message", "m", "", "message payload")
	fs.StringVarP(&p.file, "file", "f", "", "send the contents of a file as the payload")
	fs.BoolVarP(&p.stdin, "stdin", "s", false, "read the payload from stdin, whole")
	if withLines {
		p.hasLines = true
		fs.BoolVarP(&p.lines, "lines", "l", false, "read stdin and send one message per line")
	}
}

// choose checks that exactly one source is set; a command may allow none (an empty payload).
func (p *payloadFlags) choose(cmd *cobra.Command) error {
	n := 0
	for _, set := range []bool{cmd.Flags().Changed("message"), p.file != "", p.stdin, p.lines} {
		if set {
			n++
		}
	}
	if n > 1 {
		if p.hasLines {
			return errors.New("use only one of -m, -f, -s and -l")
		}
		return errors.New("use only one of -m, -f and -s")
	}
	return nil
}

// whole returns the payload for the single-message sources.
func (p *payloadFlags) whole(in io.Reader) ([]byte, error) {
	switch {
	case p.file != "":
		return os.ReadFile(p.file)
	case p.stdin:
		return io.ReadAll(in)
	}
	return []byte(p.message), nil
}

// userProps parses repeated k=v flags.
func userProps(kvs []string) (paho.UserProperties, error) {
	var out paho.UserProperties
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--user-property %q: want key=value", kv)
		}
		out = append(out, paho.UserProperty{Key: k, Value: v})
	}
	return out, nil
}
