package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Persistent sessions: Run with Config.Persistent measures delivery to subscribers whose
// sessions the broker keeps (on disk, for a broker with a durable store). Subscribe and Drain
// split a run in phases so that a broker can be looked at with a backlog queued for sessions
// that are offline:
//
//	Subscribe   the subscribers' persistent sessions subscribe and disconnect
//	Run         with no subscribers and the same RunID: the publishers fill the sessions' queues
//	Drain       the sessions reconnect and receive what was queued for them
//
// All three take the same RunID, Topic and Subscribers; Drain also the Publishers and Count
// the filling Run had.

// SessionsResult is what Subscribe did.
type SessionsResult struct {
	RunID     string   `json:"run_id"`
	Filter    string   `json:"filter"`
	QoS       byte     `json:"qos"`
	ClientIDs []string `json:"client_ids"`
	// Resumed counts the sessions the broker already had (Session Present).
	Resumed int `json:"resumed"`
}

// disconnectAll disconnects the connections that are open and forgets them.
func disconnectAll(conns []*mqttConn) {
	for i, c := range conns {
		if c != nil {
			c.disconnect()
			conns[i] = nil
		}
	}
}

// removeSessions ends the persistent sessions of the client identifiers: each reconnects with a
// clean session and disconnects at once, so the broker discards the session and its queue. It
// runs even when ctx has ended (an interrupted run still cleans up), each connection bounded
// by the connect timeout, and returns what failed.
func removeSessions(ctx context.Context, d *dialer, ids []string) []string {
	ctx = context.WithoutCancel(ctx)
	var mu sync.Mutex
	var errs []string
	_ = connectAll(ctx, len(ids), func(ctx context.Context, i int) error {
		c, err := d.connect(ctx, ids[i], 512, session{})
		if err != nil {
			mu.Lock()
			errs = append(errs, fmt.Sprintf("removing session %s: %v", ids[i], err))
			mu.Unlock()
			return nil
		}
		c.disconnect()
		return nil
	})
	return errs
}

// Subscribe opens cfg.Subscribers persistent sessions (the client identifiers Run and Drain use
// for cfg.RunID), subscribes each to Topic/# at QoS, and disconnects, leaving the sessions in
// the broker: what is published to the topic from then on is queued for them.
func Subscribe(ctx context.Context, cfg Config) (SessionsResult, error) {
	cfg.Persistent = true
	// normalize insists on a publisher and a duration; Subscribe needs neither.
	cfg.Publishers = max(cfg.Publishers, 1)
	if cfg.Duration <= 0 {
		cfg.Duration = time.Minute
	}
	if err := cfg.normalize(); err != nil {
		return SessionsResult{}, err
	}
	if cfg.Subscribers < 1 {
		return SessionsResult{}, errors.New("subscribe: at least one subscriber is needed")
	}
	d, err := newDialer(&cfg)
	if err != nil {
		return SessionsResult{}, err
	}
	res := SessionsResult{RunID: fmt.Sprintf("%08x", cfg.RunID), Filter: cfg.filter(), QoS: cfg.QoS,
		ClientIDs: cfg.subscriberIDs()}
	conns := make([]*mqttConn, cfg.Subscribers)
	var resumed atomic.Int64
	err = connectAll(ctx, cfg.Subscribers, func(ctx context.Context, i int) error {
		c, err := d.connect(ctx, res.ClientIDs[i], 4096, cfg.subscriberSession())
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		conns[i] = c
		if c.sessionPresent {
			resumed.Add(1)
		}
		if _, err := c.subscribe(res.Filter, cfg.QoS, time.Now().Add(cfg.ConnectTimeout)); err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		return nil
	})
	disconnectAll(conns)
	res.Resumed = int(resumed.Load())
	if err != nil {
		// Leave nothing half made behind.
		removeSessions(ctx, d, res.ClientIDs)
		return res, err
	}
	return res, nil
}

// Drain reconnects the persistent sessions Subscribe left (same RunID, Subscribers and Topic),
// without subscribing again, and counts what the broker delivers from their queues: Count
// measured messages from each of Publishers publishers of that run, for every subscriber. It
// stops when all have arrived, when nothing has arrived for Drain, or after Duration; then it
// removes the sessions unless KeepSessions. The delivery rate runs from the first connect to
// the last delivery. Latency is not measured: another process stamped the messages.
func Drain(ctx context.Context, cfg Config) (*Result, error) {
	cfg.Persistent = true
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	switch {
	case cfg.Subscribers < 1:
		return nil, errors.New("drain: at least one subscriber is needed")
	case cfg.Count < 1:
		return nil, errors.New("drain: the count per publisher of the filling run is needed")
	case cfg.Shared:
		return nil, errors.New("drain: shared subscriptions are not supported")
	}
	d, err := newDialer(&cfg)
	if err != nil {
		return nil, err
	}
	ids := cfg.subscriberIDs()
	conns := make([]*mqttConn, cfg.Subscribers)
	res := newResult(&cfg)
	res.Phase = "drain"
	res.Sent = uint64(cfg.Publishers) * uint64(cfg.Count)
	res.Expected = res.Sent * uint64(cfg.Subscribers)

	t0 := time.Now()
	hardStop := t0.Add(cfg.Duration)
	err = connectAll(ctx, cfg.Subscribers, func(ctx context.Context, i int) error {
		c, err := d.connect(ctx, ids[i], 256<<10, cfg.subscriberSession())
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		conns[i] = c
		return nil
	})
	if err != nil {
		disconnectAll(conns)
		return nil, err
	}
	cpu0 := processCPU()
	subs := make([]*subscriber, cfg.Subscribers)
	var ending atomic.Bool
	stopping := func() bool { return ending.Load() }
	var wg sync.WaitGroup
	for i, c := range conns {
		if !c.sessionPresent {
			res.Errors = append(res.Errors, fmt.Sprintf("subscriber %d: the broker had no session for %s", i, ids[i]))
		}
		s := newSubscriber(i, cfg.RunID, c, cfg.Publishers, uint64(cfg.Count), t0)
		s.noLatency = true
		subs[i] = s
		_ = c.nc.SetDeadline(hardStop)
		wg.Add(1)
		go func() { defer wg.Done(); s.read(stopping) }()
	}

	awaitDeliveries(ctx, subs, res.Expected, hardStop, cfg.Drain)
	ending.Store(true)
	now := time.Now()
	for _, c := range conns {
		_ = c.nc.SetReadDeadline(now)
	}
	wg.Wait()
	// The last acknowledgements, so a kept session does not get them again.
	for _, s := range subs {
		_ = s.c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_ = s.flushAcks()
	}
	res.ClientCPUSeconds = (processCPU() - cpu0).Seconds()
	disconnectAll(conns)

	var lastNs int64
	for _, s := range subs {
		res.Duplicates += s.dups
		res.Foreign += s.foreign
		lastNs = max(lastNs, s.lastNs.Load())
		if s.err != nil {
			res.Errors = append(res.Errors, s.err.Error())
		}
		for pi := range cfg.Publishers {
			u := s.receivedFrom(pi)
			res.Delivered += u
			res.Lost += uint64(cfg.Count) - min(u, uint64(cfg.Count))
		}
	}
	if lastNs > 0 {
		res.ElapsedSeconds = float64(lastNs) / 1e9
		res.DeliverRate = float64(res.Delivered) / res.ElapsedSeconds
	}
	if !cfg.KeepSessions {
		res.Errors = append(res.Errors, removeSessions(ctx, d, ids)...)
	}
	return res, nil
}
