package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// TLSConfigs builds mutual TLS for node links from a node certificate (`tern cert issue NODE
// --node`), its key and the CA that signed every node's: the server side requires and verifies
// a client certificate, the client side verifies the server's against the same CA. The files are
// read once; NodeTLS is the form that can read them again.
func TLSConfigs(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	s, err := loadNodeTLS(certFile, keyFile, caFile)
	if err != nil {
		return nil, nil, err
	}
	return s.server, s.client, nil
}

// NodeTLS is node link TLS whose files can be read again (on SIGHUP) while the node runs: new
// links, in and out, use the files as last read; links already up keep theirs. A reload that
// fails keeps the previous files in use.
type NodeTLS struct {
	certFile, keyFile, caFile string
	cur                       atomic.Pointer[nodeTLSState]
}

type nodeTLSState struct {
	server, client *tls.Config
	leaf           *x509.Certificate
}

// NewNodeTLS reads the files (see TLSConfigs).
func NewNodeTLS(certFile, keyFile, caFile string) (*NodeTLS, error) {
	t := &NodeTLS{certFile: certFile, keyFile: keyFile, caFile: caFile}
	return t, t.Reload()
}

// Reload reads the files again; on an error the previous ones stay in use.
func (t *NodeTLS) Reload() error {
	s, err := loadNodeTLS(t.certFile, t.keyFile, t.caFile)
	if err != nil {
		return err
	}
	t.cur.Store(s)
	return nil
}

// Configs returns the server and client configurations of the files as last read.
func (t *NodeTLS) Configs() (server, client *tls.Config) {
	s := t.cur.Load()
	return s.server, s.client
}

// String describes the certificate in use, for the reload's log line.
func (t *NodeTLS) String() string {
	l := t.cur.Load().leaf
	return fmt.Sprintf("node link certificate %s (serial %s, until %s)", t.certFile, l.SerialNumber, l.NotAfter.UTC().Format("2006-01-02"))
}

func loadNodeTLS(certFile, keyFile, caFile string) (*nodeTLSState, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS: loading %s and %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster TLS: no certificate in %s", caFile)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	node := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
	if !nodeCertificate(node) {
		return nil, errors.New("cluster TLS: " + certFile + " is not a node certificate (tern cert issue NODE --node)")
	}
	return &nodeTLSState{leaf: leaf,
		server: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool},
		client: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool},
	}, nil
}

// tlsConfigs returns the node link TLS in use: the reloadable Config.TLS when set, else the
// fixed ServerTLS and ClientTLS (either pair may be nil: plain links).
func (n *Node) tlsConfigs() (server, client *tls.Config) {
	if n.cfg.TLS != nil {
		return n.cfg.TLS.Configs()
	}
	return n.cfg.ServerTLS, n.cfg.ClientTLS
}

// ReloadTLS reads the node link TLS files again (Config.TLS; nothing without it). New links use
// them; a failure keeps the previous ones and is returned.
func (n *Node) ReloadTLS() error {
	if n.cfg.TLS == nil {
		return nil
	}
	if err := n.cfg.TLS.Reload(); err != nil {
		return err
	}
	n.log.Info("cluster: node link TLS reloaded", "cert", n.cfg.TLS.String())
	return nil
}
