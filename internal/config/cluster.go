package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Enabled reports whether this tern is a cluster node.
func (c Cluster) Enabled() bool { return c.Listen != "" }

// maxNodeID bounds a node id: it is a certificate's common name too (at most 64 characters).
const maxNodeID = 64

// ValidNodeID checks a node id: 1 to 64 characters of lower-case letters, digits, '.', '_' and
// '-' (a certificate identity is lower-cased, so an upper-case id could never match one).
func ValidNodeID(id string) error {
	if id == "" || len(id) > maxNodeID {
		return fmt.Errorf("cluster.node_id %q: 1 to %d characters", id, maxNodeID)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("cluster.node_id %q: use lower-case letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

func validAddr(key, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %v", key, addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%s %q: port must be 1..65535", key, addr)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		// Other nodes dial this address: it must name this host, not "every interface".
		return fmt.Errorf("%s %q: name an address the other nodes can reach, not every interface", key, addr)
	}
	return nil
}

func (c *Config) validateCluster() error {
	cl := c.Cluster
	if !cl.Enabled() {
		if cl.NodeID != "" || len(cl.Join) > 0 {
			return errors.New("cluster.node_id and cluster.join need cluster.listen (--cluster-listen)")
		}
		return nil
	}
	var errs []error
	if err := ValidNodeID(cl.NodeID); err != nil {
		errs = append(errs, err)
	}
	if cl.Advertise != "" {
		if err := validAddr("cluster.advertise", cl.Advertise); err != nil {
			errs = append(errs, err)
		}
		if _, _, err := net.SplitHostPort(cl.Listen); err != nil {
			errs = append(errs, fmt.Errorf("cluster.listen %q: %v", cl.Listen, err))
		}
	} else if err := validAddr("cluster.listen", cl.Listen); err != nil {
		errs = append(errs, err)
	}
	for _, j := range cl.Join {
		if err := validAddr("cluster.join", j); err != nil {
			errs = append(errs, err)
		}
	}
	if cl.Replicas < 1 || cl.Replicas > 9 {
		errs = append(errs, fmt.Errorf("cluster.replicas %d out of range 1..9", cl.Replicas))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("a cluster node needs a data directory (raft's log and state live there)"))
	}
	// Raft carries users' password hashes and every replicated write: beyond loopback it goes
	// over mutual TLS only.
	adv := cl.Advertise
	if adv == "" {
		adv = cl.Listen
	}
	lhost, _, _ := net.SplitHostPort(cl.Listen)
	if host, _, err := net.SplitHostPort(adv); err == nil && (!loopbackHost(host) || !loopbackHost(lhost)) {
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" || c.TLS.ClientCAFile == "" {
			errs = append(errs, fmt.Errorf("cluster.listen %s is not a loopback address: node links need mutual TLS "+
				"([tls] cert_file, key_file and client_ca_file, a node certificate from `tern cert issue NODE --node`)", cl.Listen))
		}
	}
	return errors.Join(errs...)
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
