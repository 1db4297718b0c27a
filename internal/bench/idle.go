package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// IdleResult is what Idle measured.
type IdleResult struct {
	Opened int `json:"opened"`
	// Dropped counts connections the broker had closed by the end of the hold.
	Dropped        int     `json:"dropped"`
	ConnectSeconds float64 `json:"connect_s"`
}

// Idle opens conns connections, each with one subscription (cfg.Topic/idle/<i>, at cfg.QoS),
// calls ready once all are open, keeps them open and silent for hold (or until ctx ends), and
// closes them. It is for measuring a broker's memory per idle connection.
func Idle(ctx context.Context, cfg Config, conns int, hold time.Duration, ready func(IdleResult)) (IdleResult, error) {
	cfg.Publishers = 1 // normalize insists on one; Idle publishes nothing
	if cfg.Duration <= 0 {
		cfg.Duration = hold
	}
	if err := cfg.normalize(); err != nil {
		return IdleResult{}, err
	}
	if conns < 1 {
		return IdleResult{}, fmt.Errorf("idle connections: %d", conns)
	}
	d, err := newDialer(&cfg)
	if err != nil {
		return IdleResult{}, err
	}
	prefix := fmt.Sprintf("%s-idle-%08x", cfg.ClientPrefix, newRunID())
	cs := make([]*mqttConn, conns)
	var mu sync.Mutex
	begin := time.Now()
	err = connectAll(ctx, conns, func(ctx context.Context, i int) error {
		c, err := d.connect(ctx, fmt.Sprintf("%s-%d", prefix, i), 512, session{})
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		mu.Lock()
		cs[i] = c
		mu.Unlock()
		if _, err := c.subscribe(fmt.Sprintf("%s/idle/%d", cfg.Topic, i), cfg.QoS, time.Now().Add(cfg.ConnectTimeout)); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		return nil
	})
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.disconnect()
			}
		}
	}()
	res := IdleResult{ConnectSeconds: time.Since(begin).Seconds()}
	for _, c := range cs {
		if c != nil {
			res.Opened++
		}
	}
	if err != nil {
		return res, err
	}
	if ready != nil {
		ready(res)
	}
	t := time.NewTimer(hold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	// A live idle connection has nothing to read: the read times out at once. A closed one
	// reports EOF or a reset.
	var one [1]byte
	for _, c := range cs {
		_ = c.nc.SetReadDeadline(time.Now())
		if _, err := c.nc.Read(one[:]); err != nil && !isEndOfRun(err) {
			res.Dropped++
		}
	}
	return res, nil
}
