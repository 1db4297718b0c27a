// Package certs makes the certificates tern's mutual TLS needs — a private CA, server
// certificates and client certificates — and serves TLS whose certificates can be reloaded
// without restarting listeners.
//
// Keys are ECDSA P-256: every TLS 1.2 and 1.3 client supports it, and its keys and signatures are
// small, which matters for brokers that accept many short connections. Files are PEM; private
// keys are PKCS #8 and written with mode 0600.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names of a CA inside its directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Default validities, used when a validity of zero is given.
const (
	DefaultCAValidity = 3650 * 24 * time.Hour
	// DefaultValidity is 825 days, the longest lifetime many TLS clients accept for a server
	// certificate.
	DefaultValidity = 825 * 24 * time.Hour
)

// backdate moves NotBefore into the past so that a peer whose clock runs a little behind still
// accepts a certificate issued a moment ago.
const backdate = 5 * time.Minute

// maxCommonName is ub-common-name from RFC 5280; longer names are refused by some TLS stacks.
const maxCommonName = 64

// DefaultServerHosts are the subject alternative names of a server certificate issued without
// hosts: the loopback names tern listens on when it has no configuration.
var DefaultServerHosts = []string{"localhost", "127.0.0.1", "::1"}

// ErrCAExists is returned (wrapped, naming the file) by CreateCA when the directory already holds
// a CA, so that an existing CA — and every certificate it signed — is never lost by accident.
var ErrCAExists = errors.New("a CA already exists")

// IssueOptions say what kind of certificate Issue makes.
type IssueOptions struct {
	// Server makes a server certificate (extended key usage serverAuth); otherwise a client
	// certificate (clientAuth) whose subject CN is the name.
	Server bool
	// Hosts become subject alternative names: IP addresses, DNS names, e-mail addresses
	// (containing "@") and URIs (containing "://"). A server certificate without hosts gets
	// DefaultServerHosts. Client certificates may carry SANs too, for identities taken from a SAN.
	Hosts []string
	// Node makes a cluster node's certificate: usable both to serve and to dial (server and
	// client authentication), subject CN the node id, SANs the hosts as for a server.
	Node bool
	// Validity is how long the certificate is valid; zero means DefaultValidity. It is cut short
	// at the CA's own expiry, since a certificate cannot be verified after its CA expires.
	Validity time.Duration
}

// CreateCA writes a new self-signed CA, ca.crt and ca.key, into dir (created if missing) with the
// subject CN name. It refuses, with ErrCAExists, if either file is already there; ReplaceCA
// overwrites. A validity of zero means DefaultCAValidity.
func CreateCA(dir, name string, validity time.Duration) error {
	return createCA(dir, name, validity, false)
}

// ReplaceCA is CreateCA that overwrites an existing CA. Certificates the old CA signed stop
// verifying once peers trust only the new one.
func ReplaceCA(dir, name string, validity time.Duration) error {
	return createCA(dir, name, validity, true)
}

func createCA(dir, name string, validity time.Duration, replace bool) error {
	if err := checkCommonName(name); err != nil {
		return fmt.Errorf("CA name: %w", err)
	}
	if validity == 0 {
		validity = DefaultCAValidity
	}
	if validity < 0 {
		return fmt.Errorf("CA validity %v: must be positive", validity)
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if !replace {
		// Checked before the key is generated so the common mistake fails fast; the exclusive
		// creates in writeNew still close the race with a concurrent CreateCA.
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s: %w", p, ErrCAExists)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Path length zero: this CA signs leaves only, so a leaf key that leaks cannot be used to
		// mint further certificates.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("creating CA certificate: %w", err)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if replace {
		return writeReplace([]outFile{{keyPath, keyPEM, 0o600}, {certPath, certPEM, 0o644}})
	}
	return writeNew([]outFile{{keyPath, keyPEM, 0o600}, {certPath, certPEM, 0o644}}, ErrCAExists)
}

// Issue signs a certificate for name with the CA in caDir and writes NAME.crt and NAME.key into
// outDir (created if missing), replacing earlier files of that name — re-issuing before expiry
// and then reloading (SIGHUP) is how a certificate is renewed. It returns the paths written.
func Issue(caDir, outDir, name string, opts IssueOptions) (certFile, keyFile string, err error) {
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	if validity < 0 {
		return "", "", fmt.Errorf("validity %v: must be positive", validity)
	}
	now := time.Now()
	return issue(caDir, outDir, name, opts, now.Add(-backdate), now.Add(validity))
}

// issue is Issue with an explicit validity window, so tests can make certificates that have
// already expired.
func issue(caDir, outDir, name string, opts IssueOptions, notBefore, notAfter time.Time) (certFile, keyFile string, err error) {
	if err := checkFileName(name); err != nil {
		return "", "", err
	}
	if strings.EqualFold(name, "ca") && sameDir(caDir, outDir) {
		return "", "", errors.New(`name "ca" would overwrite the CA's own files; choose another name or output directory`)
	}
	caCert, caKey, err := LoadCA(caDir)
	if err != nil {
		return "", "", err
	}
	if time.Now().After(caCert.NotAfter) {
		return "", "", fmt.Errorf("the CA in %s expired on %s", caDir, caCert.NotAfter.Format(time.DateOnly))
	}
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	serial, err := randomSerial()
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		// ECDSA keys only sign; key encipherment applies to RSA key exchange.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	hosts := opts.Hosts
	if opts.Node {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		if len(hosts) == 0 {
			hosts = DefaultServerHosts
		}
	} else if opts.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if len(hosts) == 0 {
			hosts = DefaultServerHosts
		}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if err := addSANs(tmpl, hosts); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generating key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("signing certificate: %w", err)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return "", "", err
	}
	certFile = filepath.Join(outDir, name+".crt")
	keyFile = filepath.Join(outDir, name+".key")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeReplace([]outFile{{keyFile, keyPEM, 0o600}, {certFile, certPEM, 0o644}}); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// LoadCA reads the CA certificate and key from dir. The key may be PKCS #8, SEC 1 ("EC PRIVATE
// KEY") or PKCS #1 ("RSA PRIVATE KEY"), so a CA made with openssl can sign tern certificates.
func LoadCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA key: %w", err)
	}
	cert, key, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA in %s: %w", dir, err)
	}
	return cert, key, nil
}

// parseCA decodes a CA certificate and its private key and checks that they belong together and
// that the certificate may sign others.
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no PEM CERTIFICATE block", CACertFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CACertFile, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, nil, fmt.Errorf("%s: not a CA certificate", CACertFile)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("%s: the key usage does not allow signing certificates", CACertFile)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CAKeyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match %s", CAKeyFile, CACertFile)
	}
	return cert, key, nil
}

// parseKey decodes the first private key block of a PEM file.
func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key block")
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			// openssl writes an "EC PARAMETERS" block ahead of the key; skip such blocks.
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		return s, nil
	}
}

func marshalKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// randomSerial returns a random, positive 128-bit serial number: unpredictable serials are what
// make chosen-prefix collisions against the CA's signature impractical.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generating a serial number: %w", err)
		}
		if n.Sign() > 0 { // RFC 5280 requires a positive serial
			return n, nil
		}
	}
}

// addSANs sorts hosts into the template's subject alternative names by their form.
func addSANs(tmpl *x509.Certificate, hosts []string) error {
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		switch {
		case h == "":
			return errors.New("empty host name")
		case strings.Contains(h, "://"):
			u, err := url.Parse(h)
			if err != nil || u.Scheme == "" {
				return fmt.Errorf("host %q: not a valid URI", h)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		case strings.Contains(h, "@"):
			local, domain, _ := strings.Cut(h, "@")
			if local == "" || checkDNSName(domain) != nil || strings.ContainsAny(local, " \t<>") {
				return fmt.Errorf("host %q: not a valid e-mail address", h)
			}
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, h)
		default:
			if err := checkDNSName(h); err != nil {
				return fmt.Errorf("host %q: %w", h, err)
			}
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return nil
}

// checkDNSName accepts host names and a leading "*." wildcard label; anything else would make a
// certificate that no client matches, which is better refused when it is made.
func checkDNSName(name string) error {
	if len(name) == 0 || len(name) > 253 {
		return errors.New("not a valid DNS name")
	}
	labels := strings.Split(strings.TrimSuffix(name, "."), ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) > 1 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("not a valid DNS name")
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("not a valid DNS name (character %q)", c)
			}
		}
	}
	return nil
}

func checkCommonName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("empty")
	case len(name) > maxCommonName:
		return fmt.Errorf("%q is longer than %d bytes", name, maxCommonName)
	case strings.ContainsRune(name, 0):
		return errors.New("contains a NUL byte")
	}
	return nil
}

// checkFileName checks a certificate name, which is both the subject CN and the base of the
// file names, so it must not lead outside the output directory.
func checkFileName(name string) error {
	if err := checkCommonName(name); err != nil {
		return fmt.Errorf("certificate name: %w", err)
	}
	if name == "." || name == ".." || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\:`) {
		return fmt.Errorf("certificate name %q: must not start with a dot or contain / \\ or :", name)
	}
	return nil
}

func sameDir(a, b string) bool {
	aa, errA := filepath.Abs(a)
	bb, errB := filepath.Abs(b)
	return errA == nil && errB == nil && aa == bb
}
