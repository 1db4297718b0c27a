// Package server assembles a running tern from a configuration: the core, its faces and their
// listeners. `tern serve` and the integration tests both start tern through it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/metrics"
	"github.com/ternmq/tern/internal/mqtt"
)

// Server is a running tern.
type Server struct {
	cfg    config.Config
	log    *slog.Logger
	Broker *broker.Broker
	MQTT   *mqtt.Server

	listeners []net.Listener
	https     []*http.Server
	addrs     map[string]net.Addr
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Start builds tern from cfg and starts every configured listener. Listener addresses with port 0
// get a free port; Addr tells which.
func Start(cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, err := broker.New(brokerConfig(cfg), nil, log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, Broker: b, addrs: map[string]net.Addr{}}
	s.MQTT = mqtt.NewServer(b, mqttConfig(cfg), log)
	if err := s.listen(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func brokerConfig(cfg config.Config) broker.Config {
	bc := broker.DefaultConfig()
	bc.MaxInflight = cfg.Session.MaxInflight
	bc.MaxInflightBytes = cfg.Session.MaxInflightBytes
	bc.MaxQueuedMessages = cfg.Session.MaxQueuedMessages
	bc.MaxQueuedBytes = cfg.Session.MaxQueuedBytes
	bc.QueueQoS0 = cfg.Session.QueueQoS0
	bc.MaxSessionExpiry = uint32(cfg.Session.MaxExpiry / time.Second)
	bc.MaxSubscriptions = cfg.Session.MaxSubscriptions
	bc.MaxQoS = byte(cfg.MQTT.MaxQoS)
	bc.RetainAvailable = cfg.MQTT.RetainAvailable
	return bc
}

func mqttConfig(cfg config.Config) mqtt.Config {
	m := cfg.MQTT
	return mqtt.Config{
		MaxPacketSize:       m.MaxPacketSize,
		ReceiveMax:          uint16(m.ReceiveMaximum),
		MaxKeepAlive:        uint16(m.MaxKeepAlive),
		MaxInboundAliases:   uint16(m.TopicAliasMaximum),
		MaxOutboundAliases:  uint16(m.TopicAliasMaximum),
		MaxClientIDLength:   m.MaxClientIDLength,
		ConnectTimeout:      m.ConnectTimeout,
		WriteTimeout:        m.WriteTimeout,
		OutboundBuffer:      m.OutboundBuffer,
		SlowConsumerTimeout: m.SlowConsumerTimeout,
		PublishStall:        m.PublishStall,
	}
}

func (s *Server) listen() error {
	l := s.cfg.Listen
	var tlsCfg *tls.Config
	if l.MQTTTLS != "" || l.HTTPS != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("loading TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if l.MQTT != "" {
		if err := s.serveMQTT("mqtt", "tcp", l.MQTT, nil); err != nil {
			return err
		}
	}
	if l.MQTTTLS != "" {
		if err := s.serveMQTT("mqtt_tls", "tcp", l.MQTTTLS, tlsCfg); err != nil {
			return err
		}
	}
	if l.Unix != "" {
		if err := removeStaleSocket(l.Unix); err != nil {
			return err
		}
		if err := s.serveMQTT("unix", "unix", l.Unix, nil); err != nil {
			return err
		}
	}
	if l.HTTP != "" {
		if err := s.serveHTTP("http", l.HTTP, nil); err != nil {
			return err
		}
	}
	if l.HTTPS != "" {
		if err := s.serveHTTP("https", l.HTTPS, tlsCfg); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) serveMQTT(name, network, addr string, tlsCfg *tls.Config) error {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.track(name, ln)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.MQTT.Serve(ln)
	}()
	return nil
}

func (s *Server) serveHTTP(name, addr string, tlsCfg *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.track(name, ln)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.Register(reg, s.Broker.Stats(), s.MQTT.Stats())
	hs := &http.Server{
		Handler:           s.routes(reg),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.https = append(s.https, hs)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http listener stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}

func (s *Server) track(name string, ln net.Listener) {
	s.listeners = append(s.listeners, ln)
	s.addrs[name] = ln.Addr()
	s.log.Info("listening", "listener", name, "addr", ln.Addr().String())
}

// Addr returns the bound address of a listener: "mqtt", "mqtt_tls", "unix", "http" or "https".
func (s *Server) Addr(name string) string {
	if a, ok := s.addrs[name]; ok {
		return a.String()
	}
	return ""
}

// Close stops listening, disconnects every client and waits for the listeners to stop.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, hs := range s.https {
			_ = hs.Shutdown(ctx)
		}
		for _, ln := range s.listeners {
			_ = ln.Close()
		}
		if s.MQTT != nil {
			_ = s.MQTT.Close()
		}
		if s.Broker != nil {
			_ = s.Broker.Close()
		}
		s.wg.Wait()
		if s.cfg.Listen.Unix != "" {
			_ = os.Remove(s.cfg.Listen.Unix)
		}
	})
	return nil
}

// removeStaleSocket deletes a socket file left by a tern that died, but refuses to steal one a
// live process still listens on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("unix socket path %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("unix socket %s is in use by another process", path)
	}
	return os.Remove(path)
}
