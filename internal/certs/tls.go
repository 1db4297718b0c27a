package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of subject alternative name an identity can be taken from (ServerTLSOptions.IdentitySAN).
const (
	SANEmail = "email"
	SANDNS   = "dns"
	SANURI   = "uri"
)

// ServerTLSOptions configure a ServerTLS.
type ServerTLSOptions struct {
	// CertFile and KeyFile are the server's PEM certificate (chain) and private key.
	CertFile, KeyFile string
	// ClientCAFile is a PEM file of the CAs whose client certificates are accepted. Without it
	// no client certificate is asked for. With it and RequireClientCert false, a client may
	// connect without a certificate, but one it presents must verify.
	ClientCAFile string
	// RequireClientCert refuses handshakes without a verified client certificate (mutual TLS, as
	// uLightWMQ's X.509 server does). It needs ClientCAFile.
	RequireClientCert bool
	// IdentitySAN picks where Identity finds a client's identity: "" for the subject CN, or
	// SANEmail, SANDNS or SANURI for the first subject alternative name of that kind.
	IdentitySAN string
	// NextProtos are the ALPN protocols offered, e.g. "h2" and "http/1.1" on an HTTPS listener.
	NextProtos []string
}

// ServerTLS is a TLS server configuration whose files can be re-read while listeners run.
// Handshakes that start after a Reload use the new certificate and client CAs; connections
// already established keep what they negotiated.
type ServerTLS struct {
	opts  ServerTLSOptions
	mu    sync.Mutex // serialises Reload, so two concurrent reloads cannot store out of order
	state atomic.Pointer[tlsState]
}

// tlsState is one loaded set of files; it is never changed after it is stored.
type tlsState struct {
	config *tls.Config
	leaf   *x509.Certificate
}

// NewServerTLS checks the options and loads the files.
func NewServerTLS(o ServerTLSOptions) (*ServerTLS, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("TLS needs a certificate file and a key file")
	}
	if o.RequireClientCert && o.ClientCAFile == "" {
		return nil, errors.New("requiring client certificates needs a client CA file to verify them against")
	}
	switch o.IdentitySAN {
	case "", SANEmail, SANDNS, SANURI:
	default:
		return nil, fmt.Errorf("identity SAN %q: must be empty (the subject CN), %q, %q or %q", o.IdentitySAN, SANEmail, SANDNS, SANURI)
	}
	s := &ServerTLS{opts: o}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns the configuration for tls.NewListener, tls.Server or http.Server.TLSConfig. It
// is a shell whose GetConfigForClient hands each handshake the currently loaded configuration,
// which is how a Reload reaches listeners that are already running. Fields set on it that
// crypto/tls takes from the per-handshake configuration (certificates, client authentication,
// NextProtos) have no effect.
func (s *ServerTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.state.Load().config, nil
		},
	}
}

// Reload re-reads the certificate, key and client CA files. If any of them cannot be loaded it
// returns the error and the previous files stay in use, so a mistake while renewing does not
// take TLS down.
func (s *ServerTLS) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := loadState(s.opts)
	if err != nil {
		return err
	}
	s.state.Store(st)
	return nil
}

// Certificate returns the server certificate in use.
func (s *ServerTLS) Certificate() *x509.Certificate { return s.state.Load().leaf }

// String describes the certificate in use, for logs.
func (s *ServerTLS) String() string {
	leaf := s.Certificate()
	return fmt.Sprintf("%s (serial %x, expires %s)", s.opts.CertFile, leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339))
}

// Identity is the package Identity with the configured IdentitySAN.
func (s *ServerTLS) Identity(cs tls.ConnectionState) string { return Identity(cs, s.opts.IdentitySAN) }

func loadState(o ServerTLSOptions) (*tlsState, error) {
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		// crypto/tls's errors do not name the files, and with several listeners that matters.
		return nil, fmt.Errorf("loading %s and %s: %w", o.CertFile, o.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil { // only when the x509keypairleaf GODEBUG turns Leaf off
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", o.CertFile, err)
		}
		cert.Leaf = leaf
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   o.NextProtos,
	}
	if o.ClientCAFile != "" {
		data, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the client CA file: %w", err)
		}
		pool, err := parseCertPool(data)
		if err != nil {
			return nil, fmt.Errorf("client CA file %s: %w", o.ClientCAFile, err)
		}
		cfg.ClientCAs = pool
		// A session ticket outlives a Reload, but crypto/tls (as of go.mod's Go version) resumes
		// a session only if its client chain still verifies against this pool, so clients of a
		// CA just removed cannot resume their way past the change. TestReloadSwapsClientCAs
		// guards that.
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if o.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return &tlsState{config: cfg, leaf: leaf}, nil
}

// parseCertPool reads every CERTIFICATE block of a PEM file. Unlike x509.CertPool's
// AppendCertsFromPEM it fails on a block it cannot decode or parse, so a file truncated while it
// was being replaced is reported instead of silently trusting fewer CAs.
func parseCertPool(data []byte) (*x509.CertPool, error) {
	// pem.Decode skips malformed blocks without a word; counting the BEGIN lines notices them.
	want := bytes.Count(data, []byte("-----BEGIN CERTIFICATE-----"))
	pool := x509.NewCertPool()
	n := 0
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			break
		}
		data = rest
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n != want {
		return nil, fmt.Errorf("%d of %d certificate blocks are malformed PEM", want-n, want)
	}
	if n == 0 {
		return nil, errors.New("no PEM certificates")
	}
	return pool, nil
}

// Identity returns the identity of the verified client certificate of a connection: its subject
// CN lower-cased (as uLightWMQ does), or with san set to SANEmail, SANDNS or SANURI the first
// subject alternative name of that kind (e-mail addresses and DNS names lower-cased, since they
// compare case-insensitively; URIs as written). It is "" when the client presented no
// certificate, when the certificate was not verified against client CAs, or when it lacks the
// chosen name.
func Identity(cs tls.ConnectionState, san string) string {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	leaf := cs.VerifiedChains[0][0]
	switch san {
	case "":
		return strings.ToLower(leaf.Subject.CommonName)
	case SANEmail:
		if len(leaf.EmailAddresses) > 0 {
			return strings.ToLower(leaf.EmailAddresses[0])
		}
	case SANDNS:
		if len(leaf.DNSNames) > 0 {
			return strings.ToLower(leaf.DNSNames[0])
		}
	case SANURI:
		if len(leaf.URIs) > 0 {
			return leaf.URIs[0].String()
		}
	}
	return ""
}
