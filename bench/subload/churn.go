//go:build unix

package main

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// stallAfter ends the publishing when the window stays full this long: a broker that drops
// QoS 0 messages would otherwise hold the publisher forever.
const stallAfter = 2 * time.Second

// churnResult is what the churn phase measured.
type churnResult struct {
	label      string // "steady" (no churners) or "churn"
	seconds    float64
	published  int64
	delivered  int64 // during the phase
	late       int64 // after it, within stallAfter
	ops        int64 // filters subscribed or unsubscribed, acknowledged
	churnConns int
	stalled    bool
}

func (r churnResult) String() string {
	return fmt.Sprintf("%s seconds=%.2f published=%d delivered=%d lost=%d delivered_per_s=%.0f churn_conns=%d churn_ops=%d churn_ops_per_s=%.0f stalled=%v",
		r.label, r.seconds, r.published, r.delivered, r.published-r.delivered-r.late, float64(r.delivered)/r.seconds,
		r.churnConns, r.ops, float64(r.ops)/r.seconds, r.stalled)
}

// runChurn runs the churn phase: the publisher and o.churnConns churners for o.churn.
func runChurn(o options, delivered *atomic.Int64, progress <-chan struct{}) (churnResult, error) {
	pub, err := dialLoad(o.url, "subload-pub")
	if err != nil {
		return churnResult{}, fmt.Errorf("publisher: %w", err)
	}
	defer pub.Close()
	churners := make([]mqtt.Client, o.churnConns)
	for k := range churners {
		if churners[k], err = connect(o.url, "subload-churn-"+strconv.Itoa(k)); err != nil {
			return churnResult{}, fmt.Errorf("churner %d: %w", k, err)
		}
		defer churners[k].Disconnect(100)
	}
	n := o.conns * o.per
	payload := make([]byte, o.size)
	var ops atomic.Int64
	var churnErr error
	var errOnce sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	base := delivered.Load()
	start := time.Now()
	deadline := start.Add(o.churn)
	for k, cl := range churners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := churn(cl, n, o.churnConns, k, o.churnBatch, stop, &ops); err != nil {
				errOnce.Do(func() { churnErr = fmt.Errorf("churner %d: %w", k, err) })
			}
		}()
	}
	r := churnResult{label: "churn", churnConns: o.churnConns}
	if o.churnConns == 0 {
		r.label = "steady"
	}
	var pubErr error
	end := time.NewTimer(o.churn)
	defer end.Stop()
publish:
	for seq := 0; time.Now().Before(deadline); seq++ {
		for r.published-(delivered.Load()-base) >= int64(o.window) {
			// What is queued must go out before waiting for its deliveries.
			if pubErr = pub.Flush(); pubErr != nil {
				break publish
			}
			stall := time.NewTimer(stallAfter)
			select {
			case <-progress:
				stall.Stop()
			case <-end.C:
				stall.Stop()
				break publish
			case <-stall.C:
				r.stalled = true
				break publish
			}
		}
		if o.rate > 0 {
			// On a schedule: message seq is due seq/rate after the start. Ahead of it by
			// more than a millisecond, send what is queued and wait for the schedule (this
			// paces the load; it waits for nothing to happen).
			if ahead := time.Until(start.Add(time.Duration(seq) * time.Second / time.Duration(o.rate))); ahead > time.Millisecond {
				if pubErr = pub.Flush(); pubErr != nil {
					break
				}
				select {
				case <-time.After(ahead):
				case <-end.C:
					break publish
				}
			}
		}
		if pubErr = pub.Publish(topic(target(seq, o.conns, o.per)), payload); pubErr != nil {
			break
		}
		r.published++
	}
	if pubErr == nil {
		pubErr = pub.Flush()
	}
	elapsed := time.Since(start)
	r.delivered = delivered.Load() - base
	close(stop)
	wg.Wait()
	r.ops = ops.Load()
	r.seconds = elapsed.Seconds()
	// What is still on its way counts as late, not lost, if it comes within stallAfter.
	for late := time.NewTimer(stallAfter); r.published > delivered.Load()-base; {
		select {
		case <-progress:
			continue
		case <-late.C:
		}
		break
	}
	r.late = delivered.Load() - base - r.delivered
	if pubErr != nil {
		return r, fmt.Errorf("publisher: %w", pubErr)
	}
	return r, churnErr
}

// churn subscribes churner k to batch fresh filters at a time and unsubscribes the previous
// batch, until stop; every acknowledged filter counts one op. It holds at most 2*batch filters.
func churn(cl mqtt.Client, n, churners, k, batch int, stop <-chan struct{}, ops *atomic.Int64) error {
	var prev []string
	for j := 0; ; {
		select {
		case <-stop:
			return nil
		default:
		}
		m := make(map[string]byte, batch)
		next := make([]string, 0, batch)
		for range batch {
			f := filter(churnID(n, churners, k, j))
			j++
			m[f] = 0
			next = append(next, f)
		}
		if t := cl.SubscribeMultiple(m, nil); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			return ackErr("subscribe", t)
		}
		ops.Add(int64(batch))
		if prev != nil {
			if t := cl.Unsubscribe(prev...); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
				return ackErr("unsubscribe", t)
			}
			ops.Add(int64(len(prev)))
		}
		prev = next
	}
}

func ackErr(what string, t mqtt.Token) error {
	if t.Error() != nil {
		return fmt.Errorf("%s: %w", what, t.Error())
	}
	return errors.New(what + ": no acknowledgement within 30 s")
}
