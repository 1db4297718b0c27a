package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints the result for people.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	shape := fmt.Sprintf("%d pub -> %d sub", r.Publishers, r.Subscribers)
	if r.Shared {
		shape += " (shared)"
	}
	if r.Persistent {
		shape += " (persistent sessions)"
	}
	if r.Phase == "drain" {
		return r.writeDrain(w, shape)
	}
	fmt.Fprintf(&b, "tern bench  %s  MQTT %s  QoS %d  %s  %d B  run %s", r.URL, r.MQTTVersion, r.QoS, shape, r.Size, r.RunID)
	if r.Rate > 0 {
		fmt.Fprintf(&b, "  %.0f msg/s per publisher", r.Rate)
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "sent          %d\n", r.Sent)
	fmt.Fprintf(&b, "delivered     %d of %d expected\n", r.Delivered, r.Expected)
	fmt.Fprintf(&b, "lost          %d\n", r.Lost)
	fmt.Fprintf(&b, "duplicates    %d\n", r.Duplicates)
	if r.Foreign > 0 {
		fmt.Fprintf(&b, "foreign       %d (not from this run)\n", r.Foreign)
	}
	if r.QoS > 0 {
		fmt.Fprintf(&b, "acked         %d  refused %d  unacked %d  (window %d)\n", r.Acked, r.Refused, r.Unacked, r.Window)
	}
	fmt.Fprintf(&b, "elapsed       %.3f s (publishing %.3f s)\n", r.ElapsedSeconds, r.PublishElapsedSeconds)
	fmt.Fprintf(&b, "publish       %.0f msg/s\n", r.PublishRate)
	fmt.Fprintf(&b, "delivered     %.0f msg/s\n", r.DeliverRate)
	l := r.Latency
	fmt.Fprintf(&b, "latency µs    p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  p99.99 %.1f  max %.1f  (mean %.1f)\n",
		l.P50, l.P90, l.P99, l.P999, l.P9999, l.Max, l.Mean)
	switch r.LatencyFrom {
	case "schedule":
		b.WriteString("              from each message's scheduled send time (corrected for coordinated omission)\n")
	case "write":
		b.WriteString("              from each message's write: no schedule as fast as possible (--rate measures from the schedule)\n")
	}
	if r.ClientCPUSeconds > 0 {
		fmt.Fprintf(&b, "client cpu    %.3f s (%.0f deliveries per CPU-second)\n", r.ClientCPUSeconds,
			float64(r.Delivered+r.Duplicates)/r.ClientCPUSeconds)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error         %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeDrain prints what Drain measured: no publishing and no latency.
func (r *Result) writeDrain(w io.Writer, shape string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "tern bench drain  %s  MQTT %s  %s  run %s\n", r.URL, r.MQTTVersion, shape, r.RunID)
	fmt.Fprintf(&b, "delivered     %d of %d expected\n", r.Delivered, r.Expected)
	fmt.Fprintf(&b, "lost          %d\n", r.Lost)
	fmt.Fprintf(&b, "duplicates    %d\n", r.Duplicates)
	if r.Foreign > 0 {
		fmt.Fprintf(&b, "foreign       %d (not from this run)\n", r.Foreign)
	}
	fmt.Fprintf(&b, "elapsed       %.3f s (connect to last delivery)\n", r.ElapsedSeconds)
	fmt.Fprintf(&b, "drained       %.0f msg/s\n", r.DeliverRate)
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error         %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
