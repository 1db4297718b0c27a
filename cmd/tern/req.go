package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/broker"
)

func init() {
	rootCmd.AddCommand(newReqCmd())
	rootCmd.AddCommand(newReplyCmd())
	rootCmd.AddCommand(newCallCmd())
}

func newCallCmd() *cobra.Command {
	var (
		cf      clientFlags
		pf      payloadFlags
		mf      publishFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "call NAMESPACE PROCEDURE [-m ARGS | -f FILE | -s]",
		Short: "Call a procedure served by any face (mBus command, MQTT 5 or HTTP service)",
		Long: `Send a call to $rpc/NAMESPACE/PROCEDURE and print the reply. Exits 1 with "no
responders" at once when no connected service serves it, with the broker's reason when the
service went away, and with the status when the service answered a non-zero tern-status.
"tern call tern services" lists the services.`,
		Example: `  tern call calc add -m '{"a":1,"b":2}'
  tern call tern services`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			mf.topic = broker.ProcedureTopic(args[0], args[1])
			cf.timeout = timeout
			if !cmd.Flags().Changed("message") && pf.file == "" && !pf.stdin {
				pf.message = "{}" // mBus commands expect a JSON object
			}
			return runReq(cmd, &cf, &pf, &mf, timeout)
		},
	}
	fs := cmd.Flags()
	cf.register(fs, false)
	pf.register(fs, false)
	mf.qos = 1
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the connection and the reply")
	fs.StringVar(&mf.contentType, "content-type", "application/json", "content type of the arguments")
	return cmd
}

func newReqCmd() *cobra.Command {
	var (
		cf      clientFlags
		pf      payloadFlags
		mf      publishFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "req -t TOPIC [-m MSG | -f FILE | -s]",
		Short: "Send a request and print the reply (MQTT 5 request/response)",
		Long: `Subscribe to a fresh response topic, publish the request with Response Topic and
Correlation Data, print the payload of the first reply that carries the same correlation data,
and exit. Exits 1 with "timed out" when no reply comes within --timeout (which also bounds the
connect), and with "no responders" when the broker says nobody subscribes to TOPIC (QoS 1 or 2).`,
		Example: `  tern reply -t svc/time -m "$(date)" &
  tern req -t svc/time --timeout 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cf.timeout = timeout
			return runReq(cmd, &cf, &pf, &mf, timeout)
		},
	}
	fs := cmd.Flags()
	cf.register(fs, false)
	pf.register(fs, false)
	fs.StringVarP(&mf.topic, "topic", "t", "", "topic to send the request to")
	fs.IntVarP(&mf.qos, "qos", "q", 1, "QoS of the request and of the reply subscription")
	fs.DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the connection and the reply")
	fs.StringArrayVar(&mf.userProps, "user-property", nil, "user property key=value (repeatable)")
	fs.StringVar(&mf.contentType, "content-type", "", "content type property")
	fs.StringVar(&mf.responseTopic, "response-topic", "", "response topic to use (default: a fresh random one)")
	return cmd
}

func runReq(cmd *cobra.Command, cf *clientFlags, pf *payloadFlags, mf *publishFlags, timeout time.Duration) error {
	if err := checkTopicName(mf.topic); err != nil {
		return err
	}
	if err := checkQoS(mf.qos); err != nil {
		return err
	}
	if timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if err := pf.choose(cmd); err != nil {
		return err
	}
	payload, err := pf.whole(cmd.InOrStdin())
	if err != nil {
		return err
	}
	if mf.responseTopic == "" {
		// Below the client's own response prefix, which every client may use without a grant.
		if cf.id == "" {
			cf.id = "tern-" + cmd.Name() + "-" + randomHex(6)
		}
		mf.responseTopic = broker.ResponsePrefix(cf.id) + "/" + randomHex(8)
	} else if err := checkTopicName(mf.responseTopic); err != nil {
		return fmt.Errorf("--response-topic: %w", err)
	}
	mf.correlation = randomHex(8)
	props, err := mf.properties()
	if err != nil {
		return err
	}
	ctx, stop := commandContext(cmd)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	replies := make(chan *paho.Publish, 1)
	want := []byte(mf.correlation)
	handler := func(pr paho.PublishReceived) (bool, error) {
		p := pr.Packet
		if p.Topic != mf.responseTopic || p.Properties == nil || !bytes.Equal(p.Properties.CorrelationData, want) {
			return false, nil
		}
		select {
		case replies <- p:
		default:
		}
		return true, nil
	}
	s, err := cf.connect(ctx, cmd, handler)
	if err != nil {
		return timedOut(ctx, err)
	}
	defer s.close()
	sub := &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: mf.responseTopic, QoS: byte(mf.qos), NoLocal: true}}}
	if err := subscribeChecked(ctx, cmd, s, sub); err != nil {
		return timedOut(ctx, err)
	}
	signalReady(ctx)
	noSubs, err := publishChecked(ctx, s, &paho.Publish{Topic: mf.topic, QoS: byte(mf.qos), Payload: payload, Properties: props})
	if err != nil {
		return timedOut(ctx, err)
	}
	if noSubs {
		return fmt.Errorf("no responders on %s", mf.topic)
	}
	select {
	case p := <-replies:
		if why := p.Properties.User.Get(broker.ErrorProperty); why != "" {
			return fmt.Errorf("%s: %s", mf.topic, why) // the broker failed the call
		}
		out := cmd.OutOrStdout()
		if _, err := out.Write(p.Payload); err != nil {
			return err
		}
		if _, err := out.Write([]byte{'\n'}); err != nil {
			return err
		}
		if st := p.Properties.User.Get(broker.StatusProperty); st != "" && st != "0" {
			return fmt.Errorf("status %s", st)
		}
		return nil
	case err := <-s.lost:
		return err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s waiting for a reply on %s", timeout, mf.responseTopic)
		}
		return ctx.Err()
	}
}

// timedOut says "timed out" when err came from the request's deadline.
func timedOut(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out: %w", err)
	}
	return err
}

func newReplyCmd() *cobra.Command {
	var (
		cf    clientFlags
		pf    payloadFlags
		topic string
		qos   int
		count int
	)
	cmd := &cobra.Command{
		Use:   "reply -t TOPIC -m MSG",
		Short: "Answer every request on a topic with a fixed message (MQTT 5 request/response)",
		Long: `Subscribe to TOPIC and answer every request that carries a Response Topic with
MSG, copying the request's Correlation Data, until interrupted or until -C requests were answered.
Requests without a Response Topic are ignored. A tiny responder for examples and tests.`,
		Example: `  tern reply -t svc/ping -m pong &
  tern req -t svc/ping   # prints pong`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReply(cmd, &cf, &pf, topic, qos, count)
		},
	}
	fs := cmd.Flags()
	cf.register(fs, true)
	pf.register(fs, false)
	fs.StringVarP(&topic, "topic", "t", "", "topic filter to serve requests on")
	fs.IntVarP(&qos, "qos", "q", 1, "QoS of the subscription and of the replies")
	fs.IntVarP(&count, "count", "C", 0, "exit after answering this many requests (0: no limit)")
	return cmd
}

func runReply(cmd *cobra.Command, cf *clientFlags, pf *payloadFlags, topic string, qos, count int) error {
	if topic == "" {
		return errors.New("a topic is required (-t)")
	}
	if err := checkQoS(qos); err != nil {
		return err
	}
	if count < 0 {
		return errors.New("--count cannot be negative")
	}
	if err := pf.choose(cmd); err != nil {
		return err
	}
	answer, err := pf.whole(cmd.InOrStdin())
	if err != nil {
		return err
	}
	ctx, stop := commandContext(cmd)
	defer stop()

	// The handler only queues; a worker publishes, so paho's receive path never waits on a PUBACK.
	type request struct {
		topic       string
		correlation []byte
	}
	requests := make(chan request, 1024)
	handler := func(pr paho.PublishReceived) (bool, error) {
		p := pr.Packet
		if p.Properties == nil || p.Properties.ResponseTopic == "" {
			cf.logf(cmd, "ignoring a message on %s without a response topic", p.Topic)
			return true, nil
		}
		select {
		case requests <- request{p.Properties.ResponseTopic, bytes.Clone(p.Properties.CorrelationData)}:
		default:
			cf.logf(cmd, "dropping a request on %s: too many waiting", p.Topic)
		}
		return true, nil
	}
	s, err := cf.connect(ctx, cmd, handler)
	if err != nil {
		return err
	}
	defer s.close()
	sub := &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: byte(qos)}}}
	if err := subscribeChecked(ctx, cmd, s, sub); err != nil {
		return err
	}
	signalReady(ctx)
	answered := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-s.lost:
			return err
		case r := <-requests:
			p := &paho.Publish{Topic: r.topic, QoS: byte(qos), Payload: answer,
				Properties: &paho.PublishProperties{CorrelationData: r.correlation}}
			noSubs, err := publishChecked(ctx, s, p)
			if err != nil {
				return err
			}
			if noSubs {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: reply to %s: no matching subscribers\n", r.topic)
			}
			answered++
			cf.logf(cmd, "answered a request (reply to %s)", r.topic)
			if count > 0 && answered >= count {
				return nil
			}
		}
	}
}
