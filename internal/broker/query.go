package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/topic"
)

// A query reads the retained messages ("persisted", in WAVEMQ's words) under a filter: GET
// /v1/retained, and the broker's own procedure tern/query from any face. A router whose namespace
// is designated elsewhere asks there (an uplink registers a Querier for the namespace), and when
// it cannot, answers from its own copies and says they may be stale.

// QueryProcedure is the broker's own query procedure: the call's payload is the filter, the answer
// a QueryAnswer in JSON.
var QueryProcedure = ProcedureTopic("tern", "query")

// Querier answers queries for a namespace from elsewhere (the designated router).
type Querier interface {
	Query(ctx context.Context, filter string) ([]*message.Message, error)
}

// QueryAnswer is what a query returns.
type QueryAnswer struct {
	Messages []*message.Message
	// Stale: the namespace's designated router could not be asked; these are this router's own
	// copies, possibly older.
	Stale bool
}

// queryTimeout bounds a query the core answers for a call.
const queryTimeout = 10 * time.Second

type queriers struct {
	mu sync.Mutex
	ns map[string]Querier
}

// SetQuerier makes queries of filters in namespace (a first topic level) go to q; nil removes it.
func (b *Broker) SetQuerier(namespace string, q Querier) {
	b.queriers.mu.Lock()
	defer b.queriers.mu.Unlock()
	if b.queriers.ns == nil {
		b.queriers.ns = map[string]Querier{}
	}
	if q == nil {
		delete(b.queriers.ns, namespace)
		return
	}
	b.queriers.ns[namespace] = q
}

// querierFor returns the Querier of the namespace a filter lies in, if any. A filter whose first
// level is a wildcard spans namespaces and is answered here.
func (b *Broker) querierFor(filter string) Querier {
	ns, _, _ := cutLevel(filter)
	b.queriers.mu.Lock()
	defer b.queriers.mu.Unlock()
	return b.queriers.ns[ns]
}

// Query returns the retained messages under filter, if p may read them (a subscribe, query or
// route grant on the filter): from the namespace's designated router when one is registered and
// answers, else from this broker's own, marked stale when the designated router could not be
// asked.
func (b *Broker) Query(ctx context.Context, p *auth.Principal, filter string) (QueryAnswer, error) {
	f, err := topic.ParseFilter(filter)
	if err != nil || f.Group != "" {
		return QueryAnswer{}, ErrFilterInvalid
	}
	if !p.AllowFilter(auth.Subscribe, filter) && !p.AllowFilter(auth.Query, filter) && !p.AllowFilter(auth.Route, filter) {
		b.stats.NotAuthorized.Add(1)
		return QueryAnswer{}, ErrNotAuthorized
	}
	if q := b.querierFor(filter); q != nil {
		ms, err := q.Query(ctx, filter)
		if err == nil {
			return QueryAnswer{Messages: ms}, nil
		}
		b.stats.StaleQueries.Add(1)
		b.log.Debug("query answered from local copies", "filter", filter, "err", err)
		return QueryAnswer{Messages: b.retainedMatching(f.Path), Stale: true}, nil
	}
	return QueryAnswer{Messages: b.retainedMatching(f.Path)}, nil
}

func (b *Broker) retainedMatching(path string) []*message.Message {
	now := b.now()
	var out []*message.Message
	for _, m := range b.retained.match(path) {
		if !m.Expired(now) {
			out = append(out, m)
		}
	}
	return out
}

// answerQuery answers a call to QueryProcedure from a goroutine of its own, since asking a
// designated router takes a round trip the caller's reader must not wait for.
func (b *Broker) answerQuery(call *message.Message, caller *auth.Principal) PublishResult {
	reply, corr, filter := call.Props.ResponseTopic, append([]byte(nil), call.Props.CorrelationData...), string(call.Payload)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		ans, err := b.Query(ctx, caller, filter)
		if err != nil {
			b.failCall(reply, corr, err.Error())
			return
		}
		m := &message.Message{Topic: reply, Payload: EncodeQueryAnswer(ans), QoS: 1}
		m.Props.CorrelationData = corr
		m.Props.ContentType = "application/json"
		m.Props.User = []message.UserProperty{{Key: StatusProperty, Value: "0"}}
		if _, err := b.publishOwn(m); err != nil {
			b.log.Debug("query answer not delivered", "err", err)
		}
	}()
	return PublishResult{Matched: 1}
}

// queryMessage is a message in a QueryAnswer's JSON.
type queryMessage struct {
	Topic       string `json:"topic"`
	Payload     string `json:"payload_base64"`
	QoS         byte   `json:"qos"`
	Time        int64  `json:"time"`
	Expires     int64  `json:"expires,omitempty"`
	Sender      string `json:"sender,omitempty"`
	ContentType string `json:"content_type,omitempty"`
}

type queryJSON struct {
	Stale    bool           `json:"stale"`
	Messages []queryMessage `json:"messages"`
}

// EncodeQueryAnswer is the JSON of an answer: {"stale": bool, "messages": [{topic,
// payload_base64, qos, time, expires, sender, content_type}]}, times in Unix nanoseconds.
func EncodeQueryAnswer(a QueryAnswer) []byte {
	j := queryJSON{Stale: a.Stale, Messages: make([]queryMessage, 0, len(a.Messages))}
	for _, m := range a.Messages {
		j.Messages = append(j.Messages, queryMessage{Topic: m.Topic, Payload: base64.StdEncoding.EncodeToString(m.Payload),
			QoS: m.QoS, Time: m.Time, Expires: m.Expires, Sender: m.Sender, ContentType: m.Props.ContentType})
	}
	b, _ := json.Marshal(j)
	return b
}

// errBadAnswer: a query answer that does not decode.
var errBadAnswer = errors.New("malformed query answer")

// DecodeQueryAnswer reads EncodeQueryAnswer's JSON (from another router: untrusted). Messages come
// back retained, with valid topic names.
func DecodeQueryAnswer(b []byte) (QueryAnswer, error) {
	var j queryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return QueryAnswer{}, errors.Join(errBadAnswer, err)
	}
	a := QueryAnswer{Stale: j.Stale, Messages: make([]*message.Message, 0, len(j.Messages))}
	for _, q := range j.Messages {
		p, err := base64.StdEncoding.DecodeString(q.Payload)
		if err != nil || topic.ValidName(q.Topic) != nil || q.QoS > 2 {
			return QueryAnswer{}, errBadAnswer
		}
		m := &message.Message{Topic: q.Topic, Payload: p, QoS: q.QoS, Retain: true, Time: q.Time, Expires: q.Expires, Sender: q.Sender}
		m.Props.ContentType = q.ContentType
		a.Messages = append(a.Messages, m)
	}
	return a, nil
}
