package main

// tern cert: a private CA and the server and client certificates for tern's TLS listeners and
// mutual TLS, without reaching for openssl.

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/certs"
)

func init() { rootCmd.AddCommand(newCertCmd()) }

// maxDays bounds --days well inside time.Duration's range (about 292 years).
const maxDays = 100 * 365

func newCertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Create a CA and issue server and client certificates",
		Long: `Create a private certificate authority and issue certificates from it: server
certificates for the TLS listeners, and client certificates for mutual TLS, where tern takes
a client's identity from its certificate (the subject CN, lower-cased).

Keys are ECDSA P-256 in PEM files; private keys are written with mode 0600.`,
		Example: `  tern cert ca
  tern cert issue server --server --host broker.example.com --host 10.0.0.7
  tern cert issue alice`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCertCACmd(), newCertIssueCmd())
	return cmd
}

func newCertCACmd() *cobra.Command {
	var (
		dir, name string
		days      int
		force     bool
	)
	cmd := &cobra.Command{
		Use:   "ca [--dir DIR]",
		Short: "Create a certificate authority",
		Long: `Create a self-signed certificate authority: DIR/ca.crt and DIR/ca.key, and print
their paths. It refuses to replace an existing CA unless --force is given; replacing it means
every certificate it issued stops verifying.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			validity, err := daysFlag(days)
			if err != nil {
				return err
			}
			create := certs.CreateCA
			if force {
				create = certs.ReplaceCA
			}
			if err := create(dir, name, validity); err != nil {
				if errors.Is(err, certs.ErrCAExists) {
					return fmt.Errorf("%w; use --force to replace it", err)
				}
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, filepath.Join(dir, certs.CACertFile))
			fmt.Fprintln(out, filepath.Join(dir, certs.CAKeyFile))
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dir, "dir", "certs", "directory for ca.crt and ca.key")
	fs.StringVar(&name, "name", "tern CA", "the CA's subject common name")
	fs.IntVar(&days, "days", 3650, "days the CA is valid")
	fs.BoolVar(&force, "force", false, "replace an existing CA")
	return cmd
}

func newCertIssueCmd() *cobra.Command {
	var (
		dir, out string
		server   bool
		node     bool
		hosts    []string
		days     int
	)
	cmd := &cobra.Command{
		Use:   "issue NAME [--server] [--host H ...]",
		Short: "Issue a server or client certificate",
		Long: `Issue a certificate signed by the CA in --dir and write OUT/NAME.crt and OUT/NAME.key
(OUT defaults to --dir), replacing earlier files of that name, and print their paths.

A client certificate's subject CN is NAME, and tern takes the client's identity from it,
lower-cased. A --server certificate is for the TLS listeners; its names are the --host
values (default: localhost, 127.0.0.1 and ::1). --host takes DNS names (*.example.com too),
IP addresses, e-mail addresses and URIs; it is repeatable and takes comma-separated lists.
On a client certificate they are extra names, for identities taken from a SAN.

A --node certificate is a cluster node's: NAME is the node id, and the certificate both
serves and dials (node links use mutual TLS), with --host names as for --server. A user's
client certificate from the same CA cannot pose as a node.

To renew a server certificate, issue it again and send tern SIGHUP.`,
		Example: `  tern cert issue server --server --host mq.example.com,10.0.0.7
  tern cert issue alice --out clients
  tern cert issue sensor-7 --host sensor-7@devices.example.com --days 365
  tern cert issue n1 --node --host 10.0.0.1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			validity, err := daysFlag(days)
			if err != nil {
				return err
			}
			if out == "" {
				out = dir
			}
			if server && node {
				return errors.New("--server and --node: choose one (a node certificate serves too)")
			}
			certFile, keyFile, err := certs.Issue(dir, out, args[0], certs.IssueOptions{Server: server, Node: node, Hosts: hosts, Validity: validity})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), certFile)
			fmt.Fprintln(cmd.OutOrStdout(), keyFile)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dir, "dir", "certs", "directory of the CA (ca.crt and ca.key)")
	fs.StringVar(&out, "out", "", "directory for the certificate and key (default: --dir)")
	fs.BoolVar(&server, "server", false, "issue a server certificate instead of a client certificate")
	fs.BoolVar(&node, "node", false, "issue a cluster node's certificate (serves and dials; NAME is the node id)")
	fs.StringSliceVar(&hosts, "host", nil, "subject alternative name: DNS name, IP, e-mail or URI (repeatable)")
	fs.IntVar(&days, "days", 825, "days the certificate is valid (cut short at the CA's expiry)")
	return cmd
}

func daysFlag(days int) (time.Duration, error) {
	if days < 1 || days > maxDays {
		return 0, fmt.Errorf("--days %d: must be between 1 and %d", days, maxDays)
	}
	return time.Duration(days) * 24 * time.Hour, nil
}
