package packet

import "fmt"

// ReasonCode is an MQTT 5 reason code. The same byte carries the MQTT 3.1.1
// CONNACK return code and SUBACK return codes when the version is v3.
type ReasonCode byte

// MQTT 5 reason codes (spec section 2.4). Some values have several names
// because the spec names them per packet.
const (
	Success                           ReasonCode = 0x00
	NormalDisconnection               ReasonCode = 0x00
	GrantedQoS0                       ReasonCode = 0x00
	GrantedQoS1                       ReasonCode = 0x01
	GrantedQoS2                       ReasonCode = 0x02
	DisconnectWithWill                ReasonCode = 0x04
	NoMatchingSubscribers             ReasonCode = 0x10
	NoSubscriptionExisted             ReasonCode = 0x11
	ContinueAuthentication            ReasonCode = 0x18
	ReAuthenticate                    ReasonCode = 0x19
	UnspecifiedError                  ReasonCode = 0x80
	MalformedPacket                   ReasonCode = 0x81
	ProtocolError                     ReasonCode = 0x82
	ImplementationSpecificError       ReasonCode = 0x83
	UnsupportedProtocolVersion        ReasonCode = 0x84
	ClientIDNotValid                  ReasonCode = 0x85
	BadUsernameOrPassword             ReasonCode = 0x86
	NotAuthorized                     ReasonCode = 0x87
	ServerUnavailable                 ReasonCode = 0x88
	ServerBusy                        ReasonCode = 0x89
	Banned                            ReasonCode = 0x8A
	ServerShuttingDown                ReasonCode = 0x8B
	BadAuthenticationMethod           ReasonCode = 0x8C
	KeepAliveTimeout                  ReasonCode = 0x8D
	SessionTakenOver                  ReasonCode = 0x8E
	TopicFilterInvalid                ReasonCode = 0x8F
	TopicNameInvalid                  ReasonCode = 0x90
	PacketIDInUse                     ReasonCode = 0x91
	PacketIDNotFound                  ReasonCode = 0x92
	ReceiveMaximumExceeded            ReasonCode = 0x93
	TopicAliasInvalid                 ReasonCode = 0x94
	PacketTooLarge                    ReasonCode = 0x95
	MessageRateTooHigh                ReasonCode = 0x96
	QuotaExceeded                     ReasonCode = 0x97
	AdministrativeAction              ReasonCode = 0x98
	PayloadFormatInvalid              ReasonCode = 0x99
	RetainNotSupported                ReasonCode = 0x9A
	QoSNotSupported                   ReasonCode = 0x9B
	UseAnotherServer                  ReasonCode = 0x9C
	ServerMoved                       ReasonCode = 0x9D
	SharedSubscriptionsNotSupported   ReasonCode = 0x9E
	ConnectionRateExceeded            ReasonCode = 0x9F
	MaximumConnectTime                ReasonCode = 0xA0
	SubscriptionIDsNotSupported       ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported ReasonCode = 0xA2
)

// MQTT 3.1/3.1.1 CONNACK return codes. Connack.Reason holds these when the
// version is v3.
const (
	V3Accepted                     ReasonCode = 0
	V3RefusedProtocolVersion       ReasonCode = 1
	V3RefusedIdentifierRejected    ReasonCode = 2
	V3RefusedServerUnavailable     ReasonCode = 3
	V3RefusedBadUsernameOrPassword ReasonCode = 4
	V3RefusedNotAuthorized         ReasonCode = 5
)

// V3SubackFailure is the only failure return code of a v3 SUBACK.
const V3SubackFailure ReasonCode = 0x80

var reasonNames = map[ReasonCode]string{
	0x00: "success", 0x01: "granted QoS 1", 0x02: "granted QoS 2",
	0x04: "disconnect with will message", 0x10: "no matching subscribers",
	0x11: "no subscription existed", 0x18: "continue authentication", 0x19: "re-authenticate",
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password",
	0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
	0x8B: "server shutting down", 0x8C: "bad authentication method",
	0x8D: "keep alive timeout", 0x8E: "session taken over", 0x8F: "topic filter invalid",
	0x90: "topic name invalid", 0x91: "packet identifier in use",
	0x92: "packet identifier not found", 0x93: "receive maximum exceeded",
	0x94: "topic alias invalid", 0x95: "packet too large", 0x96: "message rate too high",
	0x97: "quota exceeded", 0x98: "administrative action", 0x99: "payload format invalid",
	0x9A: "retain not supported", 0x9B: "QoS not supported", 0x9C: "use another server",
	0x9D: "server moved", 0x9E: "shared subscriptions not supported",
	0x9F: "connection rate exceeded", 0xA0: "maximum connect time",
	0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}

// String names the code as MQTT 5 does; a value with several names (0x00)
// gets the generic one.
func (r ReasonCode) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason code 0x%02X", byte(r))
}

// IsError reports whether r is a failure (0x80 and above).
func (r ReasonCode) IsError() bool { return r >= 0x80 }

// V3ConnackCode maps an MQTT 5 CONNACK reason code to the nearest MQTT 3.1.1
// CONNACK return code. Failures with no v3 counterpart (malformed packet,
// protocol error, quota...) map to "server unavailable", the only generic
// refusal v3 has; values 0..5 are assumed to be v3 codes already and are
// returned unchanged.
func V3ConnackCode(r ReasonCode) ReasonCode {
	switch r {
	case Success, V3RefusedProtocolVersion, V3RefusedIdentifierRejected,
		V3RefusedServerUnavailable, V3RefusedBadUsernameOrPassword, V3RefusedNotAuthorized:
		return r
	case UnsupportedProtocolVersion:
		return V3RefusedProtocolVersion
	case ClientIDNotValid:
		return V3RefusedIdentifierRejected
	case BadUsernameOrPassword:
		return V3RefusedBadUsernameOrPassword
	case NotAuthorized, Banned, BadAuthenticationMethod:
		return V3RefusedNotAuthorized
	}
	return V3RefusedServerUnavailable
}

// reasonSet is a 256-bit set of reason codes valid in one packet type.
type reasonSet [4]uint64

func (s *reasonSet) has(r ReasonCode) bool { return s[r>>6]&(1<<(r&63)) != 0 }

func makeReasonSet(codes ...ReasonCode) reasonSet {
	var s reasonSet
	for _, c := range codes {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

// Reason codes each MQTT 5 packet may carry (spec sections 3.x.2.1).
var (
	connackReasons = makeReasonSet(Success, UnspecifiedError, MalformedPacket, ProtocolError,
		ImplementationSpecificError, UnsupportedProtocolVersion, ClientIDNotValid,
		BadUsernameOrPassword, NotAuthorized, ServerUnavailable, ServerBusy, Banned,
		BadAuthenticationMethod, TopicNameInvalid, PacketTooLarge, QuotaExceeded,
		PayloadFormatInvalid, RetainNotSupported, QoSNotSupported, UseAnotherServer,
		ServerMoved, ConnectionRateExceeded)
	pubackReasons = makeReasonSet(Success, NoMatchingSubscribers, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicNameInvalid, PacketIDInUse,
		QuotaExceeded, PayloadFormatInvalid)
	pubrelReasons = makeReasonSet(Success, PacketIDNotFound)
	subackReasons = makeReasonSet(GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIDInUse,
		QuotaExceeded, SharedSubscriptionsNotSupported, SubscriptionIDsNotSupported,
		WildcardSubscriptionsNotSupported)
	unsubackReasons = makeReasonSet(Success, NoSubscriptionExisted, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIDInUse)
	disconnectReasons = makeReasonSet(NormalDisconnection, DisconnectWithWill,
		UnspecifiedError, MalformedPacket, ProtocolError, ImplementationSpecificError,
		NotAuthorized, ServerBusy, ServerShuttingDown, KeepAliveTimeout, SessionTakenOver,
		TopicFilterInvalid, TopicNameInvalid, ReceiveMaximumExceeded, TopicAliasInvalid,
		PacketTooLarge, MessageRateTooHigh, QuotaExceeded, AdministrativeAction,
		PayloadFormatInvalid, RetainNotSupported, QoSNotSupported, UseAnotherServer,
		ServerMoved, SharedSubscriptionsNotSupported, ConnectionRateExceeded,
		MaximumConnectTime, SubscriptionIDsNotSupported, WildcardSubscriptionsNotSupported)
	authReasons     = makeReasonSet(Success, ContinueAuthentication, ReAuthenticate)
	v3SubackReasons = makeReasonSet(GrantedQoS0, GrantedQoS1, GrantedQoS2, V3SubackFailure)
)

// A reason code outside the packet's list is data the protocol does not
// allow in an otherwise parseable packet: a Protocol Error by the spec's
// definitions (section 1.2), not a Malformed Packet.
var errBadReason = protocolErr("reason code not allowed in this packet")
