package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/paho"
	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

func init() { rootCmd.AddCommand(newSubCmd()) }

type subFlags struct {
	filters        []string
	qos            int
	count          int
	wait           time.Duration
	noLocal        bool
	retainAsPub    bool
	retainHandling int
	format         string
	payloadOnly    bool
}

func newSubCmd() *cobra.Command {
	var (
		cf clientFlags
		sf subFlags
	)
	cmd := &cobra.Command{
		Use:   "sub -t FILTER [-t FILTER...]",
		Short: "Subscribe and print messages (MQTT 5)",
		Long: `Subscribe to one or more topic filters and print every message received, until
interrupted, until -C messages arrived, or until -W elapsed.

Formats (-F): text prints "topic payload" lines (--payload-only: just the payload); json prints
one JSON object per line with the message's properties (payload as a UTF-8 string, or base64 in
"payload_base64" when it is not UTF-8); raw writes the payload bytes alone.

It exits non-zero if the broker refuses any filter, or if -W elapses before -C messages came.`,
		Example: `  tern sub -t 'sensors/#'
  tern sub -t jobs/+ -q 1 -C 1 -F json
  tern sub -t '$share/workers/jobs/#' -W 10s --payload-only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSub(cmd, &cf, &sf) },
	}
	fs := cmd.Flags()
	cf.register(fs, true)
	fs.StringArrayVarP(&sf.filters, "topic", "t", nil, "topic filter to subscribe to (repeatable)")
	fs.IntVarP(&sf.qos, "qos", "q", 0, "maximum QoS to receive: 0, 1 or 2")
	fs.IntVarP(&sf.count, "count", "C", 0, "exit after this many messages (0: no limit)")
	fs.DurationVarP(&sf.wait, "wait", "W", 0, "exit after this long (0: no limit)")
	fs.BoolVar(&sf.noLocal, "no-local", false, "do not receive this client's own publishes")
	fs.BoolVar(&sf.retainAsPub, "retain-as-published", false, "keep the retain flag as the publisher set it")
	fs.IntVar(&sf.retainHandling, "retain-handling", 0,
		"retained messages: 0 send on subscribe, 1 only for a new subscription, 2 never")
	fs.StringVarP(&sf.format, "format", "F", "text", "output format: text, json or raw")
	fs.BoolVar(&sf.payloadOnly, "payload-only", false, "text format: print only the payload")
	return cmd
}

func runSub(cmd *cobra.Command, cf *clientFlags, sf *subFlags) error {
	if len(sf.filters) == 0 {
		return errors.New("at least one topic filter is required (-t)")
	}
	for _, f := range sf.filters {
		if f == "" {
			return errors.New("empty topic filter")
		}
	}
	if err := checkQoS(sf.qos); err != nil {
		return err
	}
	if sf.retainHandling < 0 || sf.retainHandling > 2 {
		return errors.New("--retain-handling must be 0, 1 or 2")
	}
	if sf.count < 0 || sf.wait < 0 {
		return errors.New("--count and --wait cannot be negative")
	}
	format, err := newFormatter(sf.format, sf.payloadOnly)
	if err != nil {
		return err
	}
	ctx, stop := commandContext(cmd)
	defer stop()

	out := cmd.OutOrStdout()
	done := make(chan struct{})
	var received int
	var writeErr error
	// paho calls handlers one at a time, in arrival order, so no locking is needed here.
	handler := func(pr paho.PublishReceived) (bool, error) {
		if (sf.count > 0 && received >= sf.count) || writeErr != nil {
			return true, nil
		}
		received++
		if _, err := out.Write(format(pr.Packet)); err != nil {
			writeErr = err
			close(done)
			return true, nil
		}
		if sf.count > 0 && received == sf.count {
			close(done)
		}
		return true, nil
	}
	s, err := cf.connect(ctx, cmd, handler)
	if err != nil {
		return err
	}
	defer s.close()

	sub := &paho.Subscribe{}
	for _, f := range sf.filters {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{
			Topic: f, QoS: byte(sf.qos), NoLocal: sf.noLocal,
			RetainAsPublished: sf.retainAsPub, RetainHandling: byte(sf.retainHandling),
		})
	}
	if err := subscribeChecked(ctx, cmd, s, sub); err != nil {
		return err
	}
	signalReady(ctx)

	var timeout <-chan time.Time
	if sf.wait > 0 {
		t := time.NewTimer(sf.wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-done:
		return writeErr
	case <-ctx.Done():
		return nil
	case err := <-s.lost:
		return err
	case <-timeout:
		if sf.count > 0 {
			return fmt.Errorf("timed out after %s: received %d of %d messages", sf.wait, received, sf.count)
		}
		return nil
	}
}

// subscribeChecked sends the SUBSCRIBE and fails naming every filter the SUBACK refused.
func subscribeChecked(ctx context.Context, cmd *cobra.Command, s *session, sub *paho.Subscribe) error {
	ack, err := s.c.Subscribe(ctx, sub)
	if ack == nil {
		if err == nil {
			err = errors.New("no SUBACK")
		}
		return fmt.Errorf("subscribe: %w", err)
	}
	var refused []string
	for i, code := range ack.Reasons {
		if i >= len(sub.Subscriptions) {
			break
		}
		f := sub.Subscriptions[i].Topic
		if code >= 0x80 {
			refused = append(refused, fmt.Sprintf("%s: %s", f, packet.ReasonCode(code)))
			continue
		}
		s.flags.logf(cmd, "subscribed to %s (granted QoS %d)", f, code)
	}
	if len(refused) > 0 {
		msg := "subscription refused: " + strings.Join(refused, "; ")
		if ack.Properties != nil && ack.Properties.ReasonString != "" {
			msg += " (" + ack.Properties.ReasonString + ")"
		}
		return errors.New(msg)
	}
	if len(ack.Reasons) != len(sub.Subscriptions) {
		return fmt.Errorf("subscribe: SUBACK has %d reason codes for %d filters", len(ack.Reasons), len(sub.Subscriptions))
	}
	return err
}

// newFormatter returns the function that renders one message for the chosen format.
func newFormatter(name string, payloadOnly bool) (func(*paho.Publish) []byte, error) {
	switch name {
	case "text":
		return func(p *paho.Publish) []byte {
			var b bytes.Buffer
			if !payloadOnly {
				b.WriteString(p.Topic)
				b.WriteByte(' ')
			}
			b.Write(p.Payload)
			b.WriteByte('\n')
			return b.Bytes()
		}, nil
	case "json":
		if payloadOnly {
			return nil, errors.New("--payload-only applies to the text format only")
		}
		return func(p *paho.Publish) []byte {
			b, err := json.Marshal(toJSONMessage(p))
			if err != nil {
				b = []byte(`{"error":` + fmt.Sprintf("%q", err.Error()) + `}`)
			}
			return append(b, '\n')
		}, nil
	case "raw":
		if payloadOnly {
			return nil, errors.New("--payload-only applies to the text format only")
		}
		return func(p *paho.Publish) []byte { return p.Payload }, nil
	}
	return nil, fmt.Errorf("unknown format %q: use text, json or raw", name)
}

// jsonMessage is the shape `tern sub -F json` prints, one object per line.
type jsonMessage struct {
	Topic                 string         `json:"topic"`
	Payload               *string        `json:"payload,omitempty"`
	PayloadBase64         []byte         `json:"payload_base64,omitempty"`
	QoS                   byte           `json:"qos"`
	Retain                bool           `json:"retain"`
	UserProperties        []jsonUserProp `json:"user_properties,omitempty"`
	ContentType           string         `json:"content_type,omitempty"`
	ResponseTopic         string         `json:"response_topic,omitempty"`
	CorrelationData       *string        `json:"correlation_data,omitempty"`
	CorrelationDataBase64 []byte         `json:"correlation_data_base64,omitempty"`
	MessageExpiry         *uint32        `json:"message_expiry,omitempty"`
	SubscriptionIDs       []int          `json:"subscription_ids,omitempty"`
}

type jsonUserProp struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func toJSONMessage(p *paho.Publish) jsonMessage {
	m := jsonMessage{Topic: p.Topic, QoS: p.QoS, Retain: p.Retain}
	m.Payload, m.PayloadBase64 = textOrBinary(p.Payload)
	if pp := p.Properties; pp != nil {
		for _, u := range pp.User {
			m.UserProperties = append(m.UserProperties, jsonUserProp{Key: u.Key, Value: u.Value})
		}
		m.ContentType = pp.ContentType
		m.ResponseTopic = pp.ResponseTopic
		if pp.CorrelationData != nil {
			m.CorrelationData, m.CorrelationDataBase64 = textOrBinary(pp.CorrelationData)
		}
		m.MessageExpiry = pp.MessageExpiry
		if pp.SubscriptionIdentifier != nil {
			m.SubscriptionIDs = []int{*pp.SubscriptionIdentifier}
		}
	}
	return m
}

// textOrBinary returns b as a string when it is valid UTF-8, else as bytes for base64.
func textOrBinary(b []byte) (*string, []byte) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	return nil, b
}
