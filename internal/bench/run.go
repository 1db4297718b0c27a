package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Run performs one bounded run: it connects, publishes until Count or Duration, waits for the
// deliveries (at most Drain after they stop coming), and reports. It returns an error only when
// the run could not start; trouble during the run is in Result.Errors.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	r, err := connectRun(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer r.close(ctx)

	cpu0 := processCPU()
	if err := r.start(); err != nil {
		return nil, err
	}
	defer r.pubTimer.Stop()
	sent, expected := r.waitPublishing(ctx)
	awaitDeliveries(ctx, r.subs, expected, r.hardStop, cfg.Drain)
	r.stop()

	res := collect(&cfg, r.pubs, r.subs, sent, expected)
	res.ClientCPUSeconds = (processCPU() - cpu0).Seconds()
	res.Errors = append(res.Errors, r.close(ctx)...)
	return res, nil
}

// benchRun is one Run between its phases: connect (subscribers subscribed first, then the
// publishers), start, publish, wait for the deliveries, stop, close.
type benchRun struct {
	cfg *Config
	d   *dialer
	// sd dials the subscribers: d, or SubscriberURL's broker.
	sd       *dialer
	subConns []*mqttConn
	pubConns []*mqttConn
	closed   bool

	pubs []*publisher
	subs []*subscriber
	// pubDeadline ends the publishing; hardStop, Drain later, ends everything.
	pubDeadline, hardStop time.Time
	stopPub               chan struct{} // closed when publishing must end
	stopPubOnce           sync.Once
	pubTimer              *time.Timer // ends the publishing at the deadline
	ending                atomic.Bool // set once stop cuts the connections
	readers               sync.WaitGroup
	pubsDone              sync.WaitGroup // every publisher has stopped writing
	acksDone              sync.WaitGroup // ... and has its acknowledgements, or gave up
	allAcked              chan struct{}  // closed by stop: stop waiting for acknowledgements
}

// connectRun opens the run's connections: the subscribers first, each subscribed before
// anything is published, then the publishers. On failure it closes what it opened.
func connectRun(ctx context.Context, cfg *Config) (*benchRun, error) {
	d, err := newDialer(cfg)
	if err != nil {
		return nil, err
	}
	r := &benchRun{cfg: cfg, d: d, sd: d, subConns: make([]*mqttConn, cfg.Subscribers),
		pubConns: make([]*mqttConn, cfg.Publishers)}
	if cfg.SubscriberURL != "" && cfg.Dial == nil {
		sc := *cfg
		sc.URL = cfg.SubscriberURL
		if r.sd, err = newDialer(&sc); err != nil {
			return nil, err
		}
	}
	err = r.subscribeAll(ctx)
	if err == nil {
		err = r.connectPublishers(ctx)
	}
	if err != nil {
		r.close(ctx)
		return nil, err
	}
	return r, nil
}

// subscribeAll connects the subscribers and subscribes each to the run's filter.
func (r *benchRun) subscribeAll(ctx context.Context) error {
	cfg := r.cfg
	return connectAll(ctx, cfg.Subscribers, func(ctx context.Context, i int) error {
		c, err := r.sd.connect(ctx, cfg.clientID("s", i), 256<<10, cfg.subscriberSession())
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		r.subConns[i] = c
		if _, err := c.subscribe(cfg.filter(), cfg.QoS, time.Now().Add(cfg.ConnectTimeout)); err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		return nil
	})
}

// connectPublishers connects the publishers.
func (r *benchRun) connectPublishers(ctx context.Context) error {
	return connectAll(ctx, r.cfg.Publishers, func(ctx context.Context, i int) error {
		c, err := r.d.connect(ctx, r.cfg.clientID("p", i), 64<<10, session{})
		if err != nil {
			return fmt.Errorf("publisher %d: %w", i, err)
		}
		r.pubConns[i] = c
		return nil
	})
}

// close disconnects everyone and then removes the persistent sessions it should. It runs once
// (later calls do nothing) and returns what went wrong removing sessions.
func (r *benchRun) close(ctx context.Context) []string {
	if r.closed {
		return nil
	}
	r.closed = true
	disconnectAll(r.subConns)
	disconnectAll(r.pubConns)
	if r.cfg.Persistent && !r.cfg.KeepSessions {
		return removeSessions(ctx, r.d, r.cfg.subscriberIDs())
	}
	return nil
}

// endPublishing tells the publishers to stop; it may be called any number of times.
func (r *benchRun) endPublishing() { r.stopPubOnce.Do(func() { close(r.stopPub) }) }

// start sets the clock running and launches the subscribers' read loops, the publishers'
// acknowledgement readers and the publishers themselves.
func (r *benchRun) start() error {
	cfg := r.cfg
	t0 := time.Now()
	r.pubDeadline = t0.Add(cfg.Duration)
	r.hardStop = r.pubDeadline.Add(cfg.Drain)
	r.stopPub = make(chan struct{})
	r.allAcked = make(chan struct{})
	r.pubTimer = time.AfterFunc(cfg.Duration, r.endPublishing)

	r.pubs = make([]*publisher, cfg.Publishers)
	for i, c := range r.pubConns {
		p, err := newPublisher(uint32(i), cfg.RunID, c, cfg, t0, r.stopPub)
		if err != nil {
			r.pubTimer.Stop()
			return err
		}
		r.pubs[i] = p
	}
	r.subs = make([]*subscriber, cfg.Subscribers)
	for i, c := range r.subConns {
		r.subs[i] = newSubscriber(i, cfg.RunID, c, cfg.Publishers, uint64(cfg.Count), t0)
	}

	stopping := r.ending.Load
	for _, s := range r.subs {
		_ = s.c.nc.SetDeadline(r.hardStop)
		r.readers.Add(1)
		go func() { defer r.readers.Done(); s.read(stopping) }()
	}
	for _, p := range r.pubs {
		_ = p.c.nc.SetWriteDeadline(r.pubDeadline)
		_ = p.c.nc.SetReadDeadline(r.hardStop)
		r.readers.Add(1)
		go func() { defer r.readers.Done(); p.readAcks() }()
		r.pubsDone.Add(1)
		r.acksDone.Add(1)
		go func() {
			defer r.acksDone.Done()
			p.publish(r.pubsDone.Done)
			p.waitAcks(r.allAcked)
		}()
	}
	return nil
}

// waitPublishing waits for the publishers to finish (count, deadline or error), or for the
// caller to give up, and returns what was sent and how many deliveries that calls for.
func (r *benchRun) waitPublishing(ctx context.Context) (sent, expected uint64) {
	done := make(chan struct{})
	go func() { r.pubsDone.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.endPublishing()
		<-done
	}
	for _, p := range r.pubs {
		sent += p.sent()
	}
	expected = sent * uint64(r.cfg.Subscribers)
	if r.cfg.Shared && r.cfg.Subscribers > 0 {
		expected = sent // each message goes to one member of the group
	}
	return sent, expected
}

// awaitDeliveries waits until the subscribers have received expected measured messages, or
// nothing new has arrived for quiet, or hardStop has passed, or ctx has ended.
func awaitDeliveries(ctx context.Context, subs []*subscriber, expected uint64, hardStop time.Time, quiet time.Duration) {
	if expected == 0 {
		return
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	lastProgress, lastChange := uint64(0), time.Now()
	for {
		var got uint64
		for _, s := range subs {
			got += s.progress.Load()
		}
		now := time.Now()
		if got != lastProgress {
			lastProgress, lastChange = got, now
		}
		if got >= expected || now.After(hardStop) || now.Sub(lastChange) > quiet || ctx.Err() != nil {
			return
		}
		<-tick.C
	}
}

// stop gives QoS 1/2 acknowledgements a moment (bounded) to come back, then ends the run: the
// publishers stop, every connection's deadline is cut, and it waits for every goroutine.
func (r *benchRun) stop() {
	ackDone := make(chan struct{})
	go func() { r.acksDone.Wait(); close(ackDone) }()
	select {
	case <-ackDone:
	case <-time.After(min(r.cfg.Drain, time.Until(r.hardStop.Add(time.Second)))):
	}
	r.ending.Store(true)
	r.endPublishing()
	close(r.allAcked)
	now := time.Now()
	for _, c := range append(r.subConns, r.pubConns...) {
		_ = c.nc.SetDeadline(now)
	}
	r.readers.Wait()
	<-ackDone
}
