package broker

// Calls (RPC) ride on messages: a service serves procedure P of namespace N by subscribing to
// $rpc/N/P (or $share/N/$rpc/N/P, to share the load with other instances), and a call is a
// message published there with a response topic and correlation data; the reply is a message to
// that response topic with the same correlation data. Every face maps its own RPC onto this, so
// an mBus client, an MQTT 5 client and an HTTP request reach the same services.
//
// What the core adds to plain request/response:
//   - a call reaches connected services only (never an offline session's queue), and when none
//     is connected the caller gets a failure reply at once ("no responders");
//   - the core remembers which session each call went to; if that session goes away before it
//     replied, the caller gets a failure reply at once;
//   - grants: publishing to $rpc/N/P needs "call" on N/P, subscribing to it "serve" on N/P.

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
)

// RPCPrefix starts the topics of procedures: $rpc/<namespace>/<procedure>.
const RPCPrefix = "$rpc/"

// Reply properties of a failure the core sends on a caller's behalf.
const (
	// StatusProperty carries a call's status: "0" success, anything else failure (mBus's
	// status). Services set it on their replies; the core's failures carry "-1".
	StatusProperty = "tern-status"
	// ErrorProperty says why the core failed a call.
	ErrorProperty = "tern-error"
)

// ErrNoResponders: no connected session serves the procedure.
var ErrNoResponders = errors.New("no responders")

// maxPendingCalls bounds the calls one session may hold unanswered; beyond it the oldest are
// forgotten (their callers then rely on their own timeouts).
const maxPendingCalls = 10000

// pendingCall is a call delivered to a session and not yet answered.
type pendingCall struct {
	reply string
	corr  string
	// answerable: the caller was itself allowed to receive or publish on reply, so the service
	// may answer there without a grant (see replyGranted).
	answerable bool
}

// replyGranted reports whether a caller with principal p and client id may have services answer
// on reply without grants of their own: its own response prefix, or a topic it may publish to
// itself. Anything else would let a caller make a service publish where the caller may not.
func replyGranted(p *auth.Principal, clientID, reply string) bool {
	return ownResponseFilter(clientID, reply) || p.Allow(auth.Publish, reply)
}

// ProcedureTopic is the topic of procedure proc of namespace ns.
func ProcedureTopic(ns, proc string) string { return RPCPrefix + ns + "/" + proc }

// IsCall reports whether m is a call: a message to a procedure topic expecting a reply.
func IsCall(m *message.Message) bool {
	return m.Props.ResponseTopic != "" && strings.HasPrefix(m.Topic, RPCPrefix)
}

// rpcResource is what a grant on a procedure topic is checked against: "N/P" for $rpc/N/P
// ("" when the topic or filter is not a procedure's).
func rpcResource(topicOrFilter string) string {
	f := topicOrFilter
	if strings.HasPrefix(f, "$share/") {
		if i := strings.IndexByte(f[len("$share/"):], '/'); i >= 0 {
			f = f[len("$share/")+i+1:]
		}
	}
	if rest, ok := strings.CutPrefix(f, RPCPrefix); ok {
		return rest
	}
	return ""
}

// noteCall records a call delivered to s. answerable says the service may answer on the
// response topic without a grant of its own (see replyGranted). The caller holds s.mu.
func (s *Session) noteCall(m *message.Message, answerable bool) {
	r := s.extra()
	if len(r.calls) >= maxPendingCalls {
		r.calls = r.calls[1:]
	}
	// Copies: the message is borrowed, its strings may alias a connection's read buffer.
	r.calls = append(r.calls, pendingCall{reply: strings.Clone(m.Props.ResponseTopic), corr: string(m.Props.CorrelationData),
		answerable: answerable})
	s.mirror.Or(mirrorCalls)
}

// answered forgets the call m replies to, if s had one.
func (s *Session) answered(m *message.Message) {
	if !s.hasCalls() {
		return // the common case: not a service, or nothing pending
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rare // noteCall made it: the session has calls
	for i, c := range r.calls {
		if c.reply == m.Topic && c.corr == string(m.Props.CorrelationData) {
			r.calls = append(r.calls[:i], r.calls[i+1:]...)
			if len(r.calls) == 0 {
				s.mirror.And(^mirrorCalls)
			}
			return
		}
	}
}

// isPendingReply reports whether m answers a call pending on s that the service may answer
// without a grant of its own. A retained answer never counts.
func (s *Session) isPendingReply(m *message.Message) bool {
	if !s.hasCalls() || m.Retain {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.rare.calls { // noteCall made rare: the session has calls
		if c.answerable && c.reply == m.Topic && c.corr == string(m.Props.CorrelationData) {
			return true
		}
	}
	return false
}

// takeCalls removes and returns the session's pending calls. The caller holds s.mu.
func (s *Session) takeCalls() []pendingCall {
	if s.rare == nil {
		return nil
	}
	calls := s.rare.calls
	s.rare.calls = nil
	s.mirror.And(^mirrorCalls)
	return calls
}

// failCalls answers calls on their services' behalf. Called without locks.
func (b *Broker) failCalls(calls []pendingCall, why string) {
	for _, c := range calls {
		b.failCall(c.reply, []byte(c.corr), why)
	}
}

// failCall publishes a failure reply to a caller.
func (b *Broker) failCall(reply string, corr []byte, why string) {
	m := &message.Message{Topic: reply, QoS: 1}
	m.Props.CorrelationData = corr
	m.Props.User = []message.UserProperty{{Key: StatusProperty, Value: strconv.Itoa(-1)}, {Key: ErrorProperty, Value: why}}
	if _, err := b.publishOwn(m); err != nil {
		b.log.Debug("call failure not delivered", "reply_topic", reply, "err", err)
	}
}

// ServicesProcedure is the broker's own procedure listing the services (discovery): a call to it
// from any face is answered with the JSON array of ServiceInfo.
var ServicesProcedure = ProcedureTopic("tern", "services")

// answerServices answers a call to ServicesProcedure.
func (b *Broker) answerServices(call *message.Message) PublishResult {
	payload, _ := json.Marshal(b.Services())
	m := &message.Message{Topic: call.Props.ResponseTopic, Payload: payload, QoS: 1}
	m.Props.CorrelationData = call.Props.CorrelationData
	m.Props.ContentType = "application/json"
	m.Props.User = []message.UserProperty{{Key: StatusProperty, Value: "0"}}
	if _, err := b.publishOwn(m); err != nil {
		b.log.Debug("services answer not delivered", "err", err)
	}
	return PublishResult{Matched: 1}
}

// ServiceInfo is one procedure and how many connected sessions serve it.
type ServiceInfo struct {
	Namespace string `json:"namespace"`
	Procedure string `json:"procedure"`
	Instances int    `json:"instances"`
}

// Services lists the procedures connected sessions serve (on a cluster node: of every node
// whose link is up).
func (b *Broker) Services() []ServiceInfo {
	count := map[[2]string]int{}
	b.mu.Lock()
	for _, s := range b.sessions {
		s.mu.Lock()
		if s.sink != nil {
			for sub := range s.subs.all() {
				if ns, proc, ok := strings.Cut(rpcResource(sub.Filter), "/"); ok {
					count[[2]string{ns, proc}]++
				}
			}
		}
		s.mu.Unlock()
	}
	b.mu.Unlock()
	// On a cluster node, the other nodes' services too. A node tells its interest as distinct
	// filters, not per session, so a procedure served on another node counts one instance there
	// however many sessions serve it.
	if rc, ok := b.cluster.(interface{ RemoteInterest() map[string][]string }); ok {
		for _, filters := range rc.RemoteInterest() {
			seen := map[[2]string]bool{}
			for _, f := range filters {
				if ns, proc, ok := strings.Cut(rpcResource(f), "/"); ok && !seen[[2]string{ns, proc}] {
					seen[[2]string{ns, proc}] = true
					count[[2]string{ns, proc}]++
				}
			}
		}
	}
	out := make([]ServiceInfo, 0, len(count))
	for k, n := range count {
		out = append(out, ServiceInfo{Namespace: k[0], Procedure: k[1], Instances: n})
	}
	return out
}
