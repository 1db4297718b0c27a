package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

func init() { rootCmd.AddCommand(newPubCmd()) }

// publishFlags are the message flags of pub (and, in part, req).
type publishFlags struct {
	topic         string
	qos           int
	retain        bool
	userProps     []string
	contentType   string
	expiry        time.Duration
	responseTopic string
	correlation   string
}

// properties builds the PUBLISH properties the flags ask for.
func (p *publishFlags) properties() (*paho.PublishProperties, error) {
	up, err := userProps(p.userProps)
	if err != nil {
		return nil, err
	}
	props := &paho.PublishProperties{
		User:          up,
		ContentType:   p.contentType,
		ResponseTopic: p.responseTopic,
	}
	if p.correlation != "" {
		props.CorrelationData = []byte(p.correlation)
	}
	if p.expiry != 0 {
		if p.expiry < time.Second || p.expiry%time.Second != 0 || p.expiry/time.Second > 1<<32-1 {
			return nil, errors.New("--expiry must be a whole number of seconds, at least 1s")
		}
		e := uint32(p.expiry / time.Second)
		props.MessageExpiry = &e
	}
	return props, nil
}

func checkQoS(q int) error {
	if q < 0 || q > 2 {
		return fmt.Errorf("QoS %d: must be 0, 1 or 2", q)
	}
	return nil
}

func checkTopicName(t string) error {
	if t == "" {
		return errors.New("a topic is required (-t)")
	}
	if strings.ContainsAny(t, "+#") {
		return fmt.Errorf("topic %q: a topic name cannot hold the wildcards + or #", t)
	}
	return nil
}

func newPubCmd() *cobra.Command {
	var (
		cf clientFlags
		pf payloadFlags
		mf publishFlags
	)
	cmd := &cobra.Command{
		Use:   "pub -t TOPIC [-m MSG | -f FILE | -s | -l]",
		Short: "Publish a message (MQTT 5)",
		Long: `Publish one message, or one per line of stdin with -l, and exit.

It prints nothing on success. A QoS 1 or 2 publish the broker refuses exits 1 naming the
reason ("not authorized"); "no matching subscribers" is only a warning on stderr.`,
		Example: `  tern pub -t sensors/1/temp -m 21.5
  tern pub -t jobs/new -q 1 --user-property origin=cron -f job.json --content-type application/json
  tail -f app.log | tern pub -t logs/app -l`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPub(cmd, &cf, &pf, &mf)
		},
	}
	fs := cmd.Flags()
	cf.register(fs, true)
	pf.register(fs, true)
	fs.StringVarP(&mf.topic, "topic", "t", "", "topic to publish to")
	fs.IntVarP(&mf.qos, "qos", "q", 0, "quality of service: 0, 1 or 2")
	fs.BoolVarP(&mf.retain, "retain", "r", false, "ask the broker to retain the message")
	fs.StringArrayVar(&mf.userProps, "user-property", nil, "user property key=value (repeatable)")
	fs.StringVar(&mf.contentType, "content-type", "", "content type property, e.g. application/json")
	fs.DurationVar(&mf.expiry, "expiry", 0, "message expiry interval, e.g. 30s (whole seconds)")
	fs.StringVar(&mf.responseTopic, "response-topic", "", "response topic property")
	fs.StringVar(&mf.correlation, "correlation-data", "", "correlation data property")
	return cmd
}

func runPub(cmd *cobra.Command, cf *clientFlags, pf *payloadFlags, mf *publishFlags) error {
	if err := checkTopicName(mf.topic); err != nil {
		return err
	}
	if err := checkQoS(mf.qos); err != nil {
		return err
	}
	if err := pf.choose(cmd); err != nil {
		return err
	}
	props, err := mf.properties()
	if err != nil {
		return err
	}
	var single []byte
	if !pf.lines {
		if single, err = pf.whole(cmd.InOrStdin()); err != nil {
			return err
		}
	}
	ctx, stop := commandContext(cmd)
	defer stop()
	s, err := cf.connect(ctx, cmd)
	if err != nil {
		return err
	}
	defer s.close()

	warned := false
	send := func(payload []byte) error {
		p := &paho.Publish{Topic: mf.topic, QoS: byte(mf.qos), Retain: mf.retain, Payload: payload, Properties: props}
		noSubs, err := publishChecked(ctx, s, p)
		if err != nil {
			return err
		}
		if noSubs && !warned {
			warned = true
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s: no matching subscribers\n", mf.topic)
		}
		return nil
	}
	if !pf.lines {
		if err := send(single); err != nil {
			return err
		}
	} else {
		sc := bufio.NewScanner(cmd.InOrStdin())
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			if err := send([]byte(strings.TrimSuffix(sc.Text(), "\r"))); err != nil {
				return err
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
	}
	select {
	case err := <-s.lost:
		return err
	default:
	}
	return nil
}

// publishChecked publishes and turns a failure reason code in the PUBACK or PUBREC into an error
// naming it. noSubs reports the v5 "no matching subscribers" (0x10) success code.
func publishChecked(ctx context.Context, s *session, p *paho.Publish) (noSubs bool, err error) {
	if err := fitsServer(s, p); err != nil {
		return false, err
	}
	resp, err := s.c.Publish(ctx, p)
	if resp != nil && resp.ReasonCode >= 0x80 {
		rs := ""
		if resp.Properties != nil {
			rs = resp.Properties.ReasonString
		}
		return false, fmt.Errorf("publish to %s refused: %w", p.Topic, reasonError(resp.ReasonCode, rs))
	}
	if err != nil {
		select {
		case lost := <-s.lost:
			return false, fmt.Errorf("publish to %s: %w", p.Topic, lost)
		default:
		}
		return false, fmt.Errorf("publish to %s: %w", p.Topic, err)
	}
	return resp != nil && packet.ReasonCode(resp.ReasonCode) == packet.NoMatchingSubscribers, nil
}

// fitsServer refuses a publish the server announced it will not take (its Maximum Packet Size),
// rather than send it and see the connection closed under it.
func fitsServer(s *session, p *paho.Publish) error {
	if s.ack == nil || s.ack.Properties == nil || s.ack.Properties.MaximumPacketSize == nil {
		return nil
	}
	limit := *s.ack.Properties.MaximumPacketSize
	// Without its properties: a lower bound of the packet's size, enough for a payload too big.
	b, err := (&packet.Publish{Topic: []byte(p.Topic), Payload: p.Payload, QoS: p.QoS, PacketID: 1}).Append(nil, packet.V5)
	if err != nil {
		return fmt.Errorf("publish to %s: %w", p.Topic, err)
	}
	if uint32(len(b)) > limit {
		return fmt.Errorf("publish to %s: a payload of %d bytes makes a packet larger than the server's maximum packet size of %d bytes (mqtt.max_packet_size)",
			p.Topic, len(p.Payload), limit)
	}
	return nil
}
