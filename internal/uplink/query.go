package uplink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// A query of a namespace this site uplinks goes to the designated router, which keeps what is
// retained there (WAVEMQ's persisted messages): tern/query called over the link, the answer on the
// session's response prefix. While the link is down it fails at once, and the core answers from
// the site's own retained copies, marked stale.

// ErrLinkDown: the link to the designated router is down.
var ErrLinkDown = errors.New("the link to the designated router is down")

// queryTimeout bounds a query's round trip to the designated router.
const queryTimeout = 5 * time.Second

type queryReply struct{ msg *message.Message }

// Query implements broker.Querier.
func (l *Link) Query(ctx context.Context, filter string) ([]*message.Message, error) {
	l.stats.Queries.Add(1)
	l.mu.Lock()
	s := l.cur
	l.mu.Unlock()
	if s == nil {
		l.stats.QueriesFailed.Add(1)
		return nil, ErrLinkDown
	}
	ms, err := s.query(ctx, filter)
	if err != nil {
		l.stats.QueriesFailed.Add(1)
	}
	return ms, err
}

func (s *session) query(ctx context.Context, filter string) ([]*message.Message, error) {
	ch := make(chan *queryReply, 1)
	s.mu.Lock()
	s.nextQuery++
	corr := strconv.FormatUint(s.nextQuery, 10)
	s.queries[corr] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.queries, corr)
		s.mu.Unlock()
	}()
	call := &packet.Publish{Topic: []byte(broker.QueryProcedure), Payload: []byte(filter)}
	call.Props.ResponseTopic = []byte(s.responses + "/q")
	call.Props.Set(packet.PropResponseTopic)
	call.Props.CorrelationData = []byte(corr)
	call.Props.Set(packet.PropCorrelationData)
	if err := s.c.writePacket(call); err != nil {
		return nil, ErrLinkDown
	}
	t := time.NewTimer(queryTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if st := r.msg.Props.UserValue(broker.StatusProperty); st != "0" {
			return nil, fmt.Errorf("the designated router: %s", r.msg.Props.UserValue(broker.ErrorProperty))
		}
		ans, err := broker.DecodeQueryAnswer(r.msg.Payload)
		return ans.Messages, err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("the designated router did not answer the query in time")
	case <-s.closed:
		return nil, ErrLinkDown
	}
}

// answered hands a query's answer to the query waiting for it.
func (s *session) answered(m *message.Message) {
	corr := string(m.Props.CorrelationData)
	s.mu.Lock()
	ch := s.queries[corr]
	delete(s.queries, corr)
	s.mu.Unlock()
	if ch != nil {
		ch <- &queryReply{msg: m.Clone()}
	}
}

// failQueries forgets the queries of a session that ended (they see it closed).
func (s *session) failQueries() {
	s.mu.Lock()
	clear(s.queries)
	s.mu.Unlock()
}
