package server_test

// Helpers for the integration tests: a whole tern started in-process on loopback port 0, and
// three kinds of client to drive it: paho.golang (MQTT 5), paho.mqtt.golang (3.1.1) and a raw
// client built on tern's own codec for the cases where a test must control every byte and ack.
//
// Every wait has a deadline. A "nothing arrives" assertion always follows a positive barrier (a
// marker message sent after the one that must not arrive).

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
)

// waitTimeout bounds every wait for something that must happen.
const waitTimeout = 5 * time.Second

// connectTimeout bounds the wait for a CONNACK. With credentials the server verifies an argon2id
// hash first (19 MiB, 2 passes): about a second of CPU under -race, several when other tests load
// the machine and logins queue for auth's hashing slots. It bounds a failure; it measures nothing.
const connectTimeout = 60 * time.Second

// quietWait is how long a "nothing more arrives" check looks after its positive barrier.
const quietWait = 100 * time.Millisecond

var clientSeq atomic.Uint64

// uniqueID returns a client id unique within the test binary.
func uniqueID(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, clientSeq.Add(1))
}

// startServer starts a whole tern with TCP, HTTP (WebSocket) and Unix listeners on loopback;
// opts adjust the configuration first.
func startServer(t *testing.T, opts ...func(*config.Config)) *server.Server {
	t.Helper()
	return servertest.Start(t, opts...)
}

// ---- transports ----

type transport string

const (
	tcpTransport  transport = "tcp"
	wsTransport   transport = "ws"
	unixTransport transport = "unix"
)

var allTransports = []transport{tcpTransport, wsTransport, unixTransport}

// dial opens a raw network connection to the server over the given transport.
func dial(t *testing.T, srv *server.Server, tr transport) net.Conn {
	t.Helper()
	switch tr {
	case tcpTransport:
		return dialTCP(t, srv.Addr("mqtt"))
	case unixTransport:
		c, err := net.DialTimeout("unix", srv.Addr("unix"), waitTimeout)
		if err != nil {
			t.Fatalf("dial unix: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	case wsTransport:
		return dialWS(t, "ws://"+srv.Addr("http")+"/mqtt", nil)
	}
	t.Fatalf("unknown transport %q", tr)
	return nil
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial tcp %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// dialWS opens an MQTT-over-WebSocket connection (subprotocol "mqtt") and returns it as a byte
// stream. hc may carry a TLS configuration for wss.
func dialWS(t *testing.T, url string, hc *http.Client) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: hc})
	if err != nil {
		t.Fatalf("websocket dial %s: %v", url, err)
	}
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if got := ws.Subprotocol(); got != "mqtt" {
		t.Fatalf("websocket subprotocol = %q, want mqtt", got)
	}
	ws.SetReadLimit(-1)
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { _ = nc.Close() })
	return nc
}

// ---- paho.golang (MQTT 5) ----

// v5Client is a connected paho.golang client whose received messages and server DISCONNECT are
// delivered on channels.
type v5Client struct {
	t    *testing.T
	conn net.Conn
	c    *paho.Client
	ack  *paho.Connack
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
	errs chan error
}

// newV5 prepares a paho.golang client on conn; hooks adjust its ClientConfig.
func newV5(t *testing.T, conn net.Conn, hooks ...func(*paho.ClientConfig)) *v5Client {
	t.Helper()
	v := &v5Client{
		t:    t,
		conn: conn,
		msgs: make(chan *paho.Publish, 10000),
		disc: make(chan *paho.Disconnect, 1),
		errs: make(chan error, 16),
	}
	cc := paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				select {
				case v.msgs <- pr.Packet:
				default:
					t.Errorf("message buffer full, dropping %s", pr.Packet.Topic)
				}
				return true, nil
			},
		},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case v.disc <- d:
			default:
			}
		},
		OnClientError: func(err error) {
			select {
			case v.errs <- err:
			default:
			}
		},
		PacketTimeout: waitTimeout,
	}
	for _, h := range hooks {
		h(&cc)
	}
	v.c = paho.NewClient(cc)
	return v
}

// connect sends CONNECT and returns the CONNACK and error as paho reports them.
func (v *v5Client) connect(cp *paho.Connect) (*paho.Connack, error) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ack, err := v.c.Connect(ctx, cp)
	v.ack = ack
	if err == nil {
		v.t.Cleanup(func() {
			select {
			case <-v.c.Done():
			default:
				_ = v.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
			}
		})
	}
	return ack, err
}

// connectV5 connects a paho.golang client over conn and fails the test unless it is accepted.
func connectV5(t *testing.T, conn net.Conn, cp *paho.Connect, hooks ...func(*paho.ClientConfig)) *v5Client {
	t.Helper()
	v := newV5(t, conn, hooks...)
	if _, err := v.connect(cp); err != nil {
		t.Fatalf("connect %q: %v", cp.ClientID, err)
	}
	return v
}

// v5 connects a clean MQTT 5 client over TCP with the given id.
func v5(t *testing.T, srv *server.Server, id string, hooks ...func(*paho.ClientConfig)) *v5Client {
	t.Helper()
	return connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: id, CleanStart: true}, hooks...)
}

// persistentV5 connects an MQTT 5 client over TCP with a session expiry.
func persistentV5(t *testing.T, srv *server.Server, id string, clean bool, expiry uint32, hooks ...func(*paho.ClientConfig)) *v5Client {
	t.Helper()
	return connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{
		ClientID: id, CleanStart: clean,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	}, hooks...)
}

func (v *v5Client) subscribe(opts ...paho.SubscribeOptions) *paho.Suback {
	v.t.Helper()
	return v.subscribeProps(nil, opts...)
}

func (v *v5Client) subscribeProps(props *paho.SubscribeProperties, opts ...paho.SubscribeOptions) *paho.Suback {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := v.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts, Properties: props})
	if err != nil {
		v.t.Fatalf("subscribe %+v: %v", opts, err)
	}
	return sa
}

// sub subscribes to one filter with a QoS.
func (v *v5Client) sub(filter string, qos byte) {
	v.t.Helper()
	v.subscribe(paho.SubscribeOptions{Topic: filter, QoS: qos})
}

func (v *v5Client) publish(p *paho.Publish) *paho.PublishResponse {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := v.c.Publish(ctx, p)
	if err != nil {
		v.t.Fatalf("publish to %q: %v", p.Topic, err)
	}
	return resp
}

// pub publishes a payload with a QoS (waiting for the acknowledgement at QoS 1 and 2).
func (v *v5Client) pub(topic string, qos byte, payload string) *paho.PublishResponse {
	v.t.Helper()
	return v.publish(&paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
}

// next waits for the next message.
func (v *v5Client) next() *paho.Publish {
	v.t.Helper()
	select {
	case m := <-v.msgs:
		return m
	case <-time.After(waitTimeout):
		v.t.Fatalf("no message within %v", waitTimeout)
	}
	return nil
}

// expect waits for the next message and checks its topic and payload.
func (v *v5Client) expect(topic, payload string) *paho.Publish {
	v.t.Helper()
	m := v.next()
	if m.Topic != topic || string(m.Payload) != payload {
		v.t.Fatalf("got %q %q, want %q %q", m.Topic, m.Payload, topic, payload)
	}
	return m
}

// until collects messages until one arrives on marker, which it does not include.
func (v *v5Client) until(marker string) []*paho.Publish {
	v.t.Helper()
	var got []*paho.Publish
	deadline := time.After(waitTimeout)
	for {
		select {
		case m := <-v.msgs:
			if m.Topic == marker {
				return got
			}
			got = append(got, m)
		case <-deadline:
			v.t.Fatalf("marker %q not received within %v; got %s", marker, waitTimeout, describe(got))
		}
	}
}

// quiet checks that nothing more arrives for a short while (call it after a positive barrier).
func (v *v5Client) quiet() {
	v.t.Helper()
	select {
	case m := <-v.msgs:
		v.t.Fatalf("unexpected message %q %q", m.Topic, m.Payload)
	case <-time.After(quietWait):
	}
}

// drop closes the network connection without DISCONNECT and waits for paho to notice.
func (v *v5Client) drop() {
	v.t.Helper()
	_ = v.conn.Close()
	select {
	case <-v.c.Done():
	case <-time.After(waitTimeout):
		v.t.Fatal("paho client did not stop after its connection closed")
	}
}

// disconnect sends DISCONNECT with a reason code and optional session expiry.
func (v *v5Client) disconnect(code byte, expiry *uint32) {
	v.t.Helper()
	d := &paho.Disconnect{ReasonCode: code}
	if expiry != nil {
		d.Properties = &paho.DisconnectProperties{SessionExpiryInterval: expiry}
	}
	if err := v.c.Disconnect(d); err != nil {
		v.t.Fatalf("disconnect: %v", err)
	}
}

// offline disconnects gracefully (reason 0x00, optional new session expiry) and waits until the
// core has detached the session, so that what is published next is queued rather than sent to the
// closing connection.
func (v *v5Client) offline(srv *server.Server, expiry *uint32) {
	v.t.Helper()
	before := srv.Broker.Stats().Connected.Load()
	v.disconnect(0, expiry)
	waitConnected(v.t, srv, before-1)
}

// waitConnected waits until the core counts n connected sessions.
func waitConnected(t *testing.T, srv *server.Server, n int64) {
	t.Helper()
	eventually(t, waitTimeout, fmt.Sprintf("%d connected sessions", n), func() bool {
		return srv.Broker.Stats().Connected.Load() == n
	})
}

func describe(ms []*paho.Publish) string {
	var b strings.Builder
	b.WriteString("[")
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q(q%d)", m.Topic, m.Payload, m.QoS)
	}
	b.WriteString("]")
	return b.String()
}

func payloads(ms []*paho.Publish) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Payload)
	}
	return out
}

func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }
func byteP(v byte) *byte   { return &v }

// ---- paho.mqtt.golang (3.1.1) ----

type v3Message struct {
	topic    string
	payload  string
	qos      byte
	retained bool
	dup      bool
}

// v3Client is a connected paho.mqtt.golang client.
type v3Client struct {
	t    *testing.T
	c    mqtt3.Client
	msgs chan v3Message
	lost chan error
}

// v3Options returns 3.1.1 options for broker URL with handlers feeding the client's channels.
func newV3(t *testing.T, broker, id string, hooks ...func(*mqtt3.ClientOptions)) *v3Client {
	t.Helper()
	v := &v3Client{t: t, msgs: make(chan v3Message, 10000), lost: make(chan error, 1)}
	o := mqtt3.NewClientOptions().
		AddBroker(broker).
		SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(connectTimeout).
		SetWriteTimeout(waitTimeout).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			select {
			case v.msgs <- v3Message{m.Topic(), string(m.Payload()), m.Qos(), m.Retained(), m.Duplicate()}:
			default:
				t.Errorf("v3 message buffer full")
			}
		}).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) {
			select {
			case v.lost <- err:
			default:
			}
		})
	for _, h := range hooks {
		h(o)
	}
	v.c = mqtt3.NewClient(o)
	return v
}

func (v *v3Client) connect() error {
	tok := v.c.Connect()
	if !tok.WaitTimeout(connectTimeout) {
		return errors.New("connect timed out")
	}
	if tok.Error() == nil {
		v.t.Cleanup(func() { v.c.Disconnect(100) })
	}
	return tok.Error()
}

// connectV3 connects a 3.1.1 client and fails the test unless it is accepted.
func connectV3(t *testing.T, broker, id string, hooks ...func(*mqtt3.ClientOptions)) *v3Client {
	t.Helper()
	v := newV3(t, broker, id, hooks...)
	if err := v.connect(); err != nil {
		t.Fatalf("3.1.1 connect %q to %s: %v", id, broker, err)
	}
	return v
}

func (v *v3Client) sub(filter string, qos byte) {
	v.t.Helper()
	tok := v.c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		v.t.Fatalf("3.1.1 subscribe %q: %v", filter, tok.Error())
	}
	if st, ok := tok.(*mqtt3.SubscribeToken); ok {
		if code := st.Result()[filter]; code != qos {
			v.t.Fatalf("3.1.1 subscribe %q granted %d, want %d", filter, code, qos)
		}
	}
}

func (v *v3Client) pub(topic string, qos byte, retained bool, payload string) {
	v.t.Helper()
	tok := v.c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		v.t.Fatalf("3.1.1 publish %q: %v", topic, tok.Error())
	}
}

func (v *v3Client) next() v3Message {
	v.t.Helper()
	select {
	case m := <-v.msgs:
		return m
	case <-time.After(waitTimeout):
		v.t.Fatalf("3.1.1 client: no message within %v", waitTimeout)
	}
	return v3Message{}
}

func (v *v3Client) expect(topic, payload string, qos byte) v3Message {
	v.t.Helper()
	m := v.next()
	if m.topic != topic || m.payload != payload || m.qos != qos {
		v.t.Fatalf("3.1.1 client got %+v, want %s %q qos %d", m, topic, payload, qos)
	}
	return m
}

// ---- raw client on tern's codec ----

// rawClient speaks MQTT through tern's own codec so a test controls every packet: which acks are
// sent, malformed input, exact properties of what arrives.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	v    packet.Version
	pkts chan packet.Packet
	// done is closed when the reader stops; err then says why (io.EOF: the server closed).
	done chan struct{}
	err  error
	wmu  sync.Mutex
}

// newRaw starts reading packets from conn.
func newRaw(t *testing.T, conn net.Conn, v packet.Version) *rawClient {
	r := &rawClient{t: t, conn: conn, v: v, pkts: make(chan packet.Packet, 10000), done: make(chan struct{})}
	go r.read()
	t.Cleanup(func() {
		_ = conn.Close()
		<-r.done
	})
	return r
}

func (r *rawClient) read() {
	defer close(r.done)
	rd := packet.NewReader(r.conn, 0, 0)
	for {
		typ, flags, body, err := rd.Next()
		if err != nil {
			r.err = err
			return
		}
		p := packet.New(typ)
		if p == nil {
			r.err = fmt.Errorf("unknown packet type %d", typ)
			return
		}
		if err := p.Decode(flags, append([]byte(nil), body...), r.v); err != nil {
			r.err = fmt.Errorf("decoding %s from the server: %w", packet.TypeName(typ), err)
			return
		}
		r.pkts <- p
	}
}

// send encodes and writes packets.
func (r *rawClient) send(ps ...packet.Packet) {
	r.t.Helper()
	var buf []byte
	for _, p := range ps {
		var err error
		if buf, err = p.Append(buf, r.v); err != nil {
			r.t.Fatalf("encoding %s: %v", packet.TypeName(p.Type()), err)
		}
	}
	r.write(buf)
}

// write sends raw bytes; errors are ignored because the server may already have closed.
func (r *rawClient) write(b []byte) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_ = r.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	_, _ = r.conn.Write(b)
}

// next waits (at most waitTimeout) for the next packet.
func (r *rawClient) next() packet.Packet {
	r.t.Helper()
	return r.nextWithin(waitTimeout)
}

// nextWithin waits (at most d) for the next packet.
func (r *rawClient) nextWithin(d time.Duration) packet.Packet {
	r.t.Helper()
	select {
	case p := <-r.pkts:
		return p
	case <-r.done:
		select {
		case p := <-r.pkts:
			return p
		default:
		}
		r.t.Fatalf("connection ended while waiting for a packet: %v", r.err)
	case <-time.After(d):
		r.t.Fatalf("no packet within %v", d)
	}
	return nil
}

// expectPacket waits for the next packet and checks its type.
func expectPacket[P packet.Packet](r *rawClient) P {
	r.t.Helper()
	return expectPacketWithin[P](r, waitTimeout)
}

// expectConnack waits for the CONNACK, behind a password check (connectTimeout).
func expectConnack(r *rawClient) *packet.Connack {
	r.t.Helper()
	return expectPacketWithin[*packet.Connack](r, connectTimeout)
}

func expectPacketWithin[P packet.Packet](r *rawClient, d time.Duration) P {
	r.t.Helper()
	p := r.nextWithin(d)
	want, ok := p.(P)
	if !ok {
		var zero P
		r.t.Fatalf("got %s (%+v), want %T", packet.TypeName(p.Type()), p, zero)
	}
	return want
}

// expectClosed waits for the server to close the connection, skipping any packets except that a
// PUBLISH is reported; it returns the packets seen before the end.
func (r *rawClient) expectClosed() []packet.Packet {
	r.t.Helper()
	var seen []packet.Packet
	deadline := time.After(waitTimeout)
	for {
		select {
		case p := <-r.pkts:
			seen = append(seen, p)
		case <-r.done:
			for {
				select {
				case p := <-r.pkts:
					seen = append(seen, p)
				default:
					return seen
				}
			}
		case <-deadline:
			r.t.Fatalf("server did not close the connection within %v (saw %d packets)", waitTimeout, len(seen))
		}
	}
}

// connectRaw sends CONNECT and waits for a successful CONNACK.
func connectRaw(t *testing.T, conn net.Conn, c *packet.Connect) (*rawClient, *packet.Connack) {
	t.Helper()
	if c.Version == 0 {
		c.Version = packet.V5
	}
	r := newRaw(t, conn, c.Version)
	r.send(c)
	ack := expectConnack(r)
	if ack.Reason != packet.Success {
		t.Fatalf("CONNACK reason %v (%s)", ack.Reason, ack.Props.ReasonString)
	}
	return r, ack
}

// rawV5 connects a raw MQTT 5 client over TCP.
func rawV5(t *testing.T, srv *server.Server, c *packet.Connect) (*rawClient, *packet.Connack) {
	t.Helper()
	return connectRaw(t, dialTCP(t, srv.Addr("mqtt")), c)
}

func (r *rawClient) subscribe(pid uint16, subID uint32, subs ...packet.Subscription) *packet.Suback {
	r.t.Helper()
	s := &packet.Subscribe{PacketID: pid, Subscriptions: subs}
	if subID != 0 {
		s.Props.SubscriptionIDs = []uint32{subID}
	}
	r.send(s)
	ack := expectPacket[*packet.Suback](r)
	if ack.PacketID != pid {
		r.t.Fatalf("SUBACK for %d, want %d", ack.PacketID, pid)
	}
	return ack
}

// expectPublish waits for the next packet, which must be a PUBLISH on topic with payload (topic
// "" skips the topic check, for aliased deliveries).
func (r *rawClient) expectPublish(topic, payload string) *packet.Publish {
	r.t.Helper()
	p := expectPacket[*packet.Publish](r)
	if (topic != "" && string(p.Topic) != topic) || string(p.Payload) != payload {
		r.t.Fatalf("got PUBLISH %q %q, want %q %q", p.Topic, p.Payload, topic, payload)
	}
	return p
}

// ---- waiting ----

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// ---- metrics ----

// metric scrapes GET /metrics on the HTTP listener and returns one unlabelled sample.
func metric(t *testing.T, srv *server.Server, name string) float64 {
	t.Helper()
	hc := &http.Client{Timeout: waitTimeout}
	resp, err := hc.Get("http://" + srv.Addr("http") + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	return parseMetric(t, resp.Body, name)
}

func parseMetric(t *testing.T, body io.Reader, name string) float64 {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// ---- TLS ----

// selfSignedCert writes an ECDSA certificate for 127.0.0.1 and localhost into dir and returns the
// file names and a pool trusting it.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "tern test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func tlsClientConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}
