package packet

// Shared packet fixtures: the round-trip table, the paho cross-checks and
// the fuzz seeds all start from these.

type sample struct {
	name string
	v    Version
	p    Packet
}

// Full property sets, one per context, each with every property the
// context allows. String values are non-empty and numeric ones mostly
// non-zero because paho.golang writes a string property only when it is
// non-empty; zero-valued present properties are covered in the round trip.
func connectPropsAll() Properties {
	return props(PropSessionExpiry, 3600, PropReceiveMax, 100, PropMaxPacketSize, 65536,
		PropTopicAliasMax, 10, PropRequestResponseInfo, 1, PropRequestProblemInfo, 0,
		PropUser, [2]string{"region", "eu"}, PropUser, [2]string{"region", "us"},
		PropAuthMethod, "SCRAM-SHA-256", PropAuthData, "\x00\x01client-first")
}

func willPropsAll() Properties {
	return props(PropWillDelay, 30, PropPayloadFormat, 1, PropMessageExpiry, 600,
		PropContentType, "text/plain", PropResponseTopic, "replies/dev1",
		PropCorrelationData, "\xde\xad\xbe\xef", PropUser, [2]string{"why", "gone"})
}

func connackPropsAll() Properties {
	return props(PropSessionExpiry, 7200, PropReceiveMax, 20, PropMaxQoS, 1,
		PropRetainAvailable, 1, PropMaxPacketSize, 1<<20, PropAssignedClientID, "auto-4f2a",
		PropTopicAliasMax, 16, PropReasonString, "welcome", PropUser, [2]string{"node", "b1"},
		PropWildcardSubAvailable, 1, PropSubIDAvailable, 1, PropSharedSubAvailable, 1,
		PropServerKeepAlive, 45, PropResponseInfo, "resp/", PropServerReference, "other:1883",
		PropAuthMethod, "SCRAM-SHA-256", PropAuthData, "server-final")
}

func publishPropsAll() Properties {
	return props(PropPayloadFormat, 1, PropMessageExpiry, 120, PropContentType, "application/json",
		PropResponseTopic, "reply/here", PropCorrelationData, "corr-1",
		PropSubscriptionID, 268435455, PropTopicAlias, 7,
		PropUser, [2]string{"a", "1"}, PropUser, [2]string{"a", "2"})
}

func reasonProps() Properties {
	return props(PropReasonString, "because", PropUser, [2]string{"trace", "x1"})
}

func v3Samples() []sample {
	return []sample{
		{"connect/full", V311, &Connect{Version: V311, CleanStart: true, KeepAlive: 60,
			ClientID: bs("client-1"), Will: true, WillQoS: 1, WillRetain: true,
			WillTopic: bs("status/client-1"), WillPayload: bs("offline"),
			HasUsername: true, Username: bs("alice"), HasPassword: true, Password: bs("s3cr\x00t")}},
		{"connect/minimal", V311, &Connect{Version: V311, CleanStart: true}},
		{"connect/user-only", V311, &Connect{Version: V311, KeepAlive: 5, ClientID: bs("c"),
			HasUsername: true, Username: bs("bob")}},
		{"connect/will-qos2", V311, &Connect{Version: V311, ClientID: bs("w"), Will: true,
			WillQoS: 2, WillTopic: bs("t"), WillPayload: nil}},
		{"connack/present", V311, &Connack{SessionPresent: true}},
		{"connack/refused", V311, &Connack{Reason: V3RefusedNotAuthorized}},
		{"publish/qos0-retain", V311, &Publish{Retain: true, Topic: bs("a/b"), Payload: bs("hello")}},
		{"publish/qos1-dup", V311, &Publish{Dup: true, QoS: 1, Topic: bs("sensors/é/温度"),
			PacketID: 1, Payload: bs("21.5")}},
		{"publish/qos2-empty", V311, &Publish{QoS: 2, Topic: bs("x"), PacketID: 65535}},
		{"puback", V311, &Puback{PacketID: 10}},
		{"pubrec", V311, &Pubrec{PacketID: 11}},
		{"pubrel", V311, &Pubrel{PacketID: 12}},
		{"pubcomp", V311, &Pubcomp{PacketID: 13}},
		{"subscribe", V311, &Subscribe{PacketID: 2, Subscriptions: []Subscription{
			{Filter: bs("a/+/c"), QoS: 0}, {Filter: bs("d/#"), QoS: 2}, {Filter: bs("e"), QoS: 1}}}},
		{"suback", V311, &Suback{PacketID: 2, Reasons: []ReasonCode{0, 1, 2, 0x80}}},
		{"unsubscribe", V311, &Unsubscribe{PacketID: 3, Filters: [][]byte{bs("a/+/c"), bs("d/#")}}},
		{"unsuback", V311, &Unsuback{PacketID: 3}},
		{"pingreq", V311, &Pingreq{}},
		{"pingresp", V311, &Pingresp{}},
		{"disconnect", V311, &Disconnect{}},

		{"connect/v31", V31, &Connect{Version: V31, CleanStart: true, KeepAlive: 30,
			ClientID: bs("legacy"), Will: true, WillQoS: 1, WillTopic: bs("lw"),
			WillPayload: bs("bye"), HasUsername: true, Username: bs("u"),
			HasPassword: true, Password: bs("p")}},
		{"connack/v31", V31, &Connack{Reason: V3RefusedIdentifierRejected}},
		{"publish/v31", V31, &Publish{QoS: 1, Topic: bs("t"), PacketID: 9, Payload: bs("p")}},
		{"subscribe/v31", V31, &Subscribe{PacketID: 4, Subscriptions: []Subscription{{Filter: bs("#"), QoS: 1}}}},
	}
}

func v5Samples() []sample {
	return []sample{
		{"connect/full", V5, &Connect{Version: V5, CleanStart: true, KeepAlive: 60,
			Props: connectPropsAll(), ClientID: bs("client-5"),
			Will: true, WillQoS: 2, WillRetain: true, WillProps: willPropsAll(),
			WillTopic: bs("status/client-5"), WillPayload: bs("\x00offline"),
			HasUsername: true, Username: bs("alice"), HasPassword: true, Password: bs("pw")}},
		{"connect/minimal", V5, &Connect{Version: V5}},
		{"connect/password-only", V5, &Connect{Version: V5, ClientID: bs("p"),
			HasPassword: true, Password: bs("token")}},
		{"connect/will-zero-props", V5, &Connect{Version: V5, ClientID: bs("z"), Will: true,
			WillProps: props(PropWillDelay, 0, PropPayloadFormat, 0), WillTopic: bs("w"),
			Props: props(PropSessionExpiry, 0)}},
		{"connack/full", V5, &Connack{SessionPresent: true, Props: connackPropsAll()}},
		{"connack/refused", V5, &Connack{Reason: NotAuthorized,
			Props: props(PropReasonString, "no")}},
		{"connack/bare", V5, &Connack{}},
		{"publish/all-props", V5, &Publish{QoS: 1, Topic: bs("a/b"), PacketID: 77,
			Props: publishPropsAll(), Payload: bs(`{"t":1}`)}},
		{"publish/alias-only", V5, &Publish{QoS: 2, Dup: true, PacketID: 5,
			Props: props(PropTopicAlias, 7), Payload: bs("x")}},
		{"publish/qos0-bare", V5, &Publish{Retain: true, Topic: bs("t"), Payload: bs("p")}},
		{"publish/two-subids", V5, &Publish{Topic: bs("t"),
			Props: props(PropSubscriptionID, 1, PropSubscriptionID, 128)}},
		{"puback/short", V5, &Puback{PacketID: 1}},
		{"puback/reason", V5, &Puback{PacketID: 2, Reason: NoMatchingSubscribers}},
		{"puback/props", V5, &Puback{PacketID: 3, Reason: QuotaExceeded, Props: reasonProps()}},
		{"pubrec/short", V5, &Pubrec{PacketID: 4}},
		{"pubrec/props", V5, &Pubrec{PacketID: 5, Reason: PayloadFormatInvalid, Props: reasonProps()}},
		{"pubrel/short", V5, &Pubrel{PacketID: 6}},
		{"pubrel/reason", V5, &Pubrel{PacketID: 7, Reason: PacketIDNotFound}},
		{"pubrel/props", V5, &Pubrel{PacketID: 8, Props: reasonProps()}},
		{"pubcomp/short", V5, &Pubcomp{PacketID: 9}},
		{"pubcomp/props", V5, &Pubcomp{PacketID: 10, Reason: PacketIDNotFound, Props: reasonProps()}},
		{"subscribe/options", V5, &Subscribe{PacketID: 11,
			Props: props(PropSubscriptionID, 42, PropUser, [2]string{"k", "v"}),
			Subscriptions: []Subscription{
				{Filter: bs("a/#"), QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 1},
				{Filter: bs("$share/g/b/+"), QoS: 2, RetainHandling: 2},
				{Filter: bs("c"), QoS: 0}}}},
		{"subscribe/bare", V5, &Subscribe{PacketID: 12, Subscriptions: []Subscription{{Filter: bs("x")}}}},
		{"suback", V5, &Suback{PacketID: 11, Props: reasonProps(), Reasons: []ReasonCode{
			GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError, ImplementationSpecificError,
			NotAuthorized, TopicFilterInvalid, PacketIDInUse, QuotaExceeded,
			SharedSubscriptionsNotSupported, SubscriptionIDsNotSupported,
			WildcardSubscriptionsNotSupported}}},
		{"unsubscribe", V5, &Unsubscribe{PacketID: 13, Props: props(PropUser, [2]string{"k", "v"}),
			Filters: [][]byte{bs("a/#"), bs("$share/g/b")}}},
		{"unsuback", V5, &Unsuback{PacketID: 13, Props: reasonProps(), Reasons: []ReasonCode{
			Success, NoSubscriptionExisted, UnspecifiedError, ImplementationSpecificError,
			NotAuthorized, TopicFilterInvalid, PacketIDInUse}}},
		{"pingreq", V5, &Pingreq{}},
		{"pingresp", V5, &Pingresp{}},
		{"disconnect/short", V5, &Disconnect{}},
		{"disconnect/reason", V5, &Disconnect{Reason: DisconnectWithWill}},
		{"disconnect/props", V5, &Disconnect{Reason: ServerMoved, Props: props(PropSessionExpiry, 0,
			PropReasonString, "moving", PropServerReference, "b2:1883", PropUser, [2]string{"k", "v"})}},
		{"auth/short", V5, &Auth{}},
		{"auth/continue", V5, &Auth{Reason: ContinueAuthentication,
			Props: props(PropAuthMethod, "SCRAM-SHA-256", PropAuthData, "client-final")}},
		{"auth/reauth", V5, &Auth{Reason: ReAuthenticate, Props: props(PropAuthMethod, "K",
			PropReasonString, "refresh", PropUser, [2]string{"k", "v"})}},
	}
}

func allSamples() []sample { return append(v3Samples(), v5Samples()...) }
