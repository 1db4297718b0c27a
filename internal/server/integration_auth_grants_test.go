package server_test

// Grants through paho: groups, the super group and '$' topics, call and serve on procedures,
// retained wills, and refusals a 3.1.1 client cannot be told about.

import (
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const notAuthorized = byte(packet.NotAuthorized)

// TestGroupGrants: a member gets its groups' grants on top of its own, a non-member none of
// them, and a deleted group's grants are gone at the member's next connect.
func TestGroupGrants(t *testing.T) {
	srv := securedServer(t)
	a := srv.Auth
	must(t, a.PutGroup(auth.Group{Name: "sensors", Grants: grants(t, "publish:sensors/#", "subscribe:sensors/+/status")}))
	must(t, a.PutUser(auth.User{Name: "carol", Groups: []string{"sensors"}, Grants: grants(t, "subscribe:sensors/#")}, []byte("carolpw")))

	carol := loginV5(t, srv, "carol-1", "carol", "carolpw")
	if codes := subCodes(t, carol, paho.SubscribeOptions{Topic: "sensors/#", QoS: 1}); codes[0] != 1 {
		t.Fatalf("carol's own subscribe grant: %#x", codes[0])
	}
	if r := pubCode(t, carol, &paho.Publish{Topic: "sensors/1/t", QoS: 1, Payload: []byte("20")}); r >= 0x80 {
		t.Fatalf("publish by the group's grant: %#x", r)
	}
	carol.expect("sensors/1/t", "20")
	if r := pubCode(t, carol, &paho.Publish{Topic: "users/carol/x", QoS: 1, Payload: []byte("x")}); r != notAuthorized {
		t.Fatalf("publish neither carol nor her group may: %#x", r)
	}

	alice := loginV5(t, srv, "alice-1", "alice", "alicepw")
	if r := pubCode(t, alice, &paho.Publish{Topic: "sensors/1/t", QoS: 1, Payload: []byte("forged")}); r != notAuthorized {
		t.Fatalf("a non-member used the group's publish grant: %#x", r)
	}
	if codes := subCodes(t, alice, paho.SubscribeOptions{Topic: "sensors/1/status", QoS: 1}); codes[0] != notAuthorized {
		t.Fatalf("a non-member used the group's subscribe grant: %#x", codes[0])
	}

	must(t, a.DeleteGroup("sensors"))
	later := loginV5(t, srv, "carol-2", "carol", "carolpw")
	if r := pubCode(t, later, &paho.Publish{Topic: "sensors/1/t", QoS: 1, Payload: []byte("late")}); r != notAuthorized {
		t.Fatalf("publish by a deleted group's grant: %#x", r)
	}
	// Nothing refused reached carol's subscription: the next thing she gets is her own marker.
	must(t, a.PutGroup(auth.Group{Name: "sensors", Grants: grants(t, "publish:sensors/marker")}))
	marker := loginV5(t, srv, "carol-3", "carol", "carolpw")
	marker.pub("sensors/marker", 1, "m")
	if got := payloads(carol.until("sensors/marker")); len(got) != 0 {
		t.Fatalf("carol received refused messages %q", got)
	}
}

// TestSuperGroupAndDollarTopics: "#" grants do not reach '$' topics for any action, an explicit
// "$SYS/..." grant does, and members of auth.super_group may do everything everywhere without a
// group record.
func TestSuperGroupAndDollarTopics(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) { c.Auth.SuperGroup = "admins" })
	a := srv.Auth
	must(t, a.PutUser(auth.User{Name: "root", Groups: []string{"admins"}}, []byte("rootpw")))
	must(t, a.PutUser(auth.User{Name: "carol", Grants: grants(t, "publish:#", "subscribe:#", "retain:#")}, []byte("carolpw")))
	must(t, a.PutUser(auth.User{Name: "ops", Grants: grants(t, "subscribe:$SYS/#", "publish:$SYS/test/ops")}, []byte("opspw")))

	root := loginV5(t, srv, "root-1", "root", "rootpw")
	carol := loginV5(t, srv, "carol-1", "carol", "carolpw")
	ops := loginV5(t, srv, "ops-1", "ops", "opspw")

	if codes := subCodes(t, root, paho.SubscribeOptions{Topic: "$SYS/test/#", QoS: 1}, paho.SubscribeOptions{Topic: "users/#", QoS: 1}); codes[0] != 1 || codes[1] != 1 {
		t.Fatalf("super group member's SUBACK %v", codes)
	}
	if codes := subCodes(t, carol, paho.SubscribeOptions{Topic: "#", QoS: 1}, paho.SubscribeOptions{Topic: "$SYS/test/#", QoS: 1},
		paho.SubscribeOptions{Topic: "+/test/#", QoS: 1}); codes[0] != 1 || codes[1] != notAuthorized || codes[2] != 1 {
		t.Fatalf("'#' grants and $SYS: SUBACK %v, want [1 0x87 1]", codes)
	}
	if codes := subCodes(t, ops, paho.SubscribeOptions{Topic: "$SYS/test/#", QoS: 1}); codes[0] != 1 {
		t.Fatalf("explicit $SYS grant: %#x", codes[0])
	}

	if r := pubCode(t, carol, &paho.Publish{Topic: "$SYS/test/x", QoS: 1, Payload: []byte("carol")}); r != notAuthorized {
		t.Fatalf("publish:# reached $SYS: %#x", r)
	}
	if r := pubCode(t, carol, &paho.Publish{Topic: "$SYS/test/x", QoS: 1, Retain: true, Payload: []byte("carol")}); r != notAuthorized {
		t.Fatalf("retain:# reached $SYS: %#x", r)
	}
	if r := pubCode(t, ops, &paho.Publish{Topic: "$SYS/test/other", QoS: 1, Payload: []byte("ops")}); r != notAuthorized {
		t.Fatalf("ops outside its $SYS publish grant: %#x", r)
	}
	if r := pubCode(t, root, &paho.Publish{Topic: "$SYS/test/x", QoS: 1, Retain: true, Payload: []byte("root")}); r >= 0x80 {
		t.Fatalf("super group member on $SYS: %#x", r)
	}
	if r := pubCode(t, root, &paho.Publish{Topic: "users/alice/x", QoS: 1, Payload: []byte("root2")}); r >= 0x80 {
		t.Fatalf("super group member on a user's topic: %#x", r)
	}
	if r := pubCode(t, ops, &paho.Publish{Topic: "$SYS/test/ops", QoS: 1, Payload: []byte("ops")}); r >= 0x80 {
		t.Fatalf("explicit $SYS publish grant: %#x", r)
	}

	root.expect("$SYS/test/x", "root")
	root.expect("users/alice/x", "root2")
	root.expect("$SYS/test/ops", "ops")
	if m := ops.expect("$SYS/test/x", "root"); m.Properties.User.Get(message.SenderProperty) != "root" {
		t.Fatalf("sender %q", m.Properties.User.Get(message.SenderProperty))
	}
	ops.expect("$SYS/test/ops", "ops")
	// carol's "#" got the user topic but none of the $SYS ones, carol's refused ones included.
	root.pub("m/marker", 1, "m")
	if got := payloads(carol.until("m/marker")); len(got) != 1 || got[0] != "root2" {
		t.Fatalf("carol's '#' received %q, want only [root2]", got)
	}
	// No retained $SYS message from carol: a new subscriber with rights gets root's only.
	late := loginV5(t, srv, "ops-2", "ops", "opspw")
	late.sub("$SYS/test/x", 1)
	late.expect("$SYS/test/x", "root")
}

// TestCallAndServeGrants: publishing to $rpc/N/P needs "call" on N/P and subscribing to it "serve"
// on N/P ("publish:$rpc/#" and "subscribe:$rpc/#" are not enough, shared or not, with or without
// a response topic); a caller may subscribe to its own $response prefix and no other's.
func TestCallAndServeGrants(t *testing.T) {
	srv := securedServer(t)
	a := srv.Auth
	must(t, a.PutUser(auth.User{Name: "calc", Grants: grants(t, "serve:calc/add")}, []byte("calcpw")))
	must(t, a.PutUser(auth.User{Name: "caller", Grants: grants(t, "call:calc/add")}, []byte("callerpw")))
	must(t, a.PutUser(auth.User{Name: "plain", Grants: grants(t, "publish:$rpc/#", "subscribe:$rpc/#", "publish:#", "subscribe:#")}, []byte("plainpw")))

	svc := loginV5(t, srv, "calc-1", "calc", "calcpw")
	if codes := subCodes(t, svc, paho.SubscribeOptions{Topic: "$rpc/calc/add", QoS: 1}, paho.SubscribeOptions{Topic: "$rpc/calc/mul", QoS: 1},
		paho.SubscribeOptions{Topic: "$rpc/other/add", QoS: 1}); codes[0] != 1 || codes[1] != notAuthorized || codes[2] != notAuthorized {
		t.Fatalf("serve grants: SUBACK %v, want [1 0x87 0x87]", codes)
	}
	plain := loginV5(t, srv, "plain-1", "plain", "plainpw")
	if codes := subCodes(t, plain, paho.SubscribeOptions{Topic: "$rpc/calc/add", QoS: 1}, paho.SubscribeOptions{Topic: "$share/g/$rpc/calc/add", QoS: 1}); codes[0] != notAuthorized || codes[1] != notAuthorized {
		t.Fatalf("subscribe grants serving a procedure: SUBACK %v", codes)
	}
	call := func(v *v5Client, proc, reply, corr string) byte {
		return pubCode(t, v, &paho.Publish{Topic: "$rpc/calc/" + proc, QoS: 1, Payload: []byte("1+2"), Properties: &paho.PublishProperties{
			ResponseTopic: reply, CorrelationData: []byte(corr)}})
	}
	if r := call(plain, "add", "$response/plain-1/r", "p1"); r != notAuthorized {
		t.Fatalf("publish grants calling a procedure: %#x", r)
	}

	caller := loginV5(t, srv, "caller-1", "caller", "callerpw")
	if codes := subCodes(t, caller, paho.SubscribeOptions{Topic: "$response/caller-1/#", QoS: 1}, paho.SubscribeOptions{Topic: "$response/calc-1/#", QoS: 1}); codes[0] != 1 || codes[1] != notAuthorized {
		t.Fatalf("response prefixes: SUBACK %v, want [1 0x87]", codes)
	}
	if r := call(caller, "mul", "$response/caller-1/r", "c0"); r != notAuthorized {
		t.Fatalf("call outside the grant: %#x", r)
	}
	if r := call(caller, "add", "$response/caller-1/r", "c1"); r >= 0x80 {
		t.Fatalf("call within the grant: %#x", r)
	}
	if r := pubCode(t, plain, &paho.Publish{Topic: "$rpc/calc/add", QoS: 1, Payload: []byte("x")}); r != notAuthorized {
		t.Fatalf("a publish to a procedure without a response topic is still a call: %#x", r)
	}
	// Only the granted call reached the service, although refused ones came before it.
	if m := svc.expect("$rpc/calc/add", "1+2"); m.Properties.ResponseTopic != "$response/caller-1/r" || string(m.Properties.CorrelationData) != "c1" {
		t.Fatalf("the call arrived with response topic %q correlation %q", m.Properties.ResponseTopic, m.Properties.CorrelationData)
	}
	if r := call(caller, "add", "$response/caller-1/r", "c2"); r >= 0x80 {
		t.Fatalf("second call: %#x", r)
	}
	if m := svc.expect("$rpc/calc/add", "1+2"); string(m.Properties.CorrelationData) != "c2" {
		t.Fatalf("second call correlation %q", m.Properties.CorrelationData)
	}
}

// TestServiceAnswersEachCallOnce: a service may answer a call it was given, wherever the caller
// wants the reply and without a publish grant there, exactly once; a second answer is checked
// against its own grants. Twenty rounds over TCP, so that the connections' pooled read buffers
// are reused between a call and its answer.
func TestServiceAnswersEachCallOnce(t *testing.T) {
	srv := securedServer(t)
	a := srv.Auth
	must(t, a.PutUser(auth.User{Name: "calc", Grants: grants(t, "serve:calc/add")}, []byte("calcpw")))
	must(t, a.PutUser(auth.User{Name: "caller", Grants: grants(t, "call:calc/add")}, []byte("callerpw")))
	svc := loginV5(t, srv, "calc-1", "calc", "calcpw")
	svc.sub("$rpc/calc/add", 1)
	caller := loginV5(t, srv, "caller-1", "caller", "callerpw")
	caller.sub("$response/caller-1/#", 1)
	refused := 0
	for i := range 20 {
		reply, corr := fmt.Sprintf("$response/caller-1/r%02d", i), fmt.Sprintf("c%02d", i)
		if r := pubCode(t, caller, &paho.Publish{Topic: "$rpc/calc/add", QoS: 1, Payload: []byte("1+2"),
			Properties: &paho.PublishProperties{ResponseTopic: reply, CorrelationData: []byte(corr)}}); r >= 0x80 {
			t.Fatalf("call %d: %#x", i, r)
		}
		m := svc.expect("$rpc/calc/add", "1+2")
		if m.Properties.ResponseTopic != reply || string(m.Properties.CorrelationData) != corr {
			t.Fatalf("call %d arrived with response topic %q correlation %q", i, m.Properties.ResponseTopic, m.Properties.CorrelationData)
		}
		answer := func() byte {
			return pubCode(t, svc, &paho.Publish{Topic: reply, QoS: 1, Payload: []byte("3"),
				Properties: &paho.PublishProperties{CorrelationData: []byte(corr)}})
		}
		if r := answer(); r >= 0x80 {
			refused++
			t.Errorf("answer %d to %s refused: %#x", i, reply, r)
			continue
		}
		got := caller.expect(reply, "3")
		if string(got.Properties.CorrelationData) != corr || got.Properties.User.Get(message.SenderProperty) != "calc" {
			t.Fatalf("reply %d correlation %q sender %q", i, got.Properties.CorrelationData, got.Properties.User.Get(message.SenderProperty))
		}
		if r := answer(); r != notAuthorized {
			t.Fatalf("a second answer to call %d: %#x, want 0x87", i, r)
		}
	}
	if refused > 0 {
		t.Fatalf("%d of 20 first answers refused", refused)
	}
}

// TestWillGrants: a will needs publish on its topic and, when retained, retain too; 3.1.1 gets 5.
func TestWillGrants(t *testing.T) {
	srv := securedServer(t)
	will := func(topic string, retain bool) *packet.Connect {
		return &packet.Connect{Will: true, WillTopic: []byte(topic), WillPayload: []byte("gone"), WillRetain: retain, CleanStart: true}
	}
	for _, c := range []struct {
		name, user, pw, topic string
		retain                bool
		v5, v3                packet.ReasonCode
	}{
		{"alice, own topic", "alice", "alicepw", "users/alice/status", false, packet.Success, packet.Success},
		{"alice, retained without a retain grant", "alice", "alicepw", "users/alice/status", true, packet.NotAuthorized, packet.V3RefusedNotAuthorized},
		{"bob, retained with a retain grant", "bob", "bobpw", "users/bob/status", true, packet.Success, packet.Success},
		{"bob, retained on alice's topic", "bob", "bobpw", "users/alice/status", true, packet.NotAuthorized, packet.V3RefusedNotAuthorized},
		{"bob, on $SYS", "bob", "bobpw", "$SYS/x", false, packet.NotAuthorized, packet.V3RefusedNotAuthorized},
	} {
		if got := rawConnack(t, srv, packet.V5, uniqueID("w5"), c.user, c.pw, will(c.topic, c.retain)); got != c.v5 {
			t.Errorf("%s, MQTT 5: CONNACK %v, want %v", c.name, got, c.v5)
		}
		if got := rawConnack(t, srv, packet.V311, uniqueID("w3"), c.user, c.pw, will(c.topic, c.retain)); got != c.v3 {
			t.Errorf("%s, 3.1.1: CONNACK %d, want %d", c.name, got, c.v3)
		}
	}
}

// TestRefusedPublishV3: 3.1.1 has no reason code in PUBACK, so a refused publish is acknowledged,
// not delivered, and the connection goes on.
func TestRefusedPublishV3(t *testing.T) {
	srv := securedServer(t)
	bob := loginV5(t, srv, "bob-1", "bob", "bobpw")
	bob.sub("users/#", 1)
	alice := connectV3(t, "tcp://"+srv.Addr("mqtt"), "alice-3", func(o *mqtt3.ClientOptions) { o.SetUsername("alice").SetPassword("alicepw") })
	alice.pub("users/bob/x", 1, false, "forged qos 1")
	alice.pub("users/bob/y", 0, false, "forged qos 0")
	alice.pub("users/alice/r", 1, true, "retain without grant")
	alice.pub("users/alice/ok", 1, false, "fine")
	if got := payloads(bob.until("users/alice/ok")); len(got) != 0 {
		t.Fatalf("refused 3.1.1 publishes delivered: %q", got)
	}
	select {
	case err := <-alice.lost:
		t.Fatalf("3.1.1 connection lost after a refused publish: %v", err)
	default:
	}
	eventually(t, waitTimeout, "three refusals counted", func() bool { return srv.Broker.Stats().NotAuthorized.Load() == 3 })
}

// TestDenyGrantSubscribeFailure is the MQTT interoperability suite's test_subscribe_failure: a
// user allowed "#" but denied "test/nosubscribe" subscribes to both in one SUBSCRIBE and gets
// [granted, 0x87] (3.1.1: 0x80), and a publish to a denied topic is refused with 0x87. The denies
// come from the user and from auth.default_grants, written as configuration writes them.
func TestDenyGrantSubscribeFailure(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) { c.Auth.DefaultGrants = []string{"deny:publish:test/nopublish"} })
	must(t, srv.Auth.PutUser(auth.User{Name: "interop", Grants: grants(t, "subscribe:#", "publish:#",
		"deny:subscribe:test/nosubscribe")}, []byte("interoppw")))

	c := loginV5(t, srv, "interop-5", "interop", "interoppw")
	codes := subCodes(t, c, paho.SubscribeOptions{Topic: "#", QoS: 2}, paho.SubscribeOptions{Topic: "test/nosubscribe", QoS: 2})
	if len(codes) != 2 || codes[0] != 2 || codes[1] != notAuthorized {
		t.Fatalf("SUBACK reasons %#v, want [2 0x87]", codes)
	}
	if r := pubCode(t, c, &paho.Publish{Topic: "test/nopublish", QoS: 1, Payload: []byte("x")}); r != notAuthorized {
		t.Fatalf("publish to a denied topic: %#x", r)
	}
	c.pub("test/ok", 1, "ok")
	c.expect("test/ok", "ok")

	v3 := connectV3(t, "tcp://"+srv.Addr("mqtt"), "interop-3", func(o *mqtt3.ClientOptions) { o.SetUsername("interop").SetPassword("interoppw") })
	tok := v3.c.SubscribeMultiple(map[string]byte{"#": 1, "test/nosubscribe": 1}, nil)
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatal("3.1.1 subscribe timed out")
	}
	if res := tok.(*mqtt3.SubscribeToken).Result(); res["#"] != 1 || res["test/nosubscribe"] != 0x80 {
		t.Fatalf("3.1.1 SUBACK %v", res)
	}
}
