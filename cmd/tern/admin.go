package main

// The management commands (tern user, group, grant, token) work on a data directory while tern
// is stopped (admin_offline.go), or on a running tern through its admin API (admin_client.go).
// adminOps is what both offer, so each command is written once.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/store/pebblestore"
)

// adminOps are the management operations. A missing user, group or token is an error that
// errors.Is auth.ErrNotFound, in both modes.
type adminOps interface {
	User(name string) (auth.User, error)
	PutUser(name string, b adminapi.UserBody) error
	SetPassword(name, password string) error
	DeleteUser(name string) error
	Users() ([]auth.User, error)
	EditGrants(g adminapi.GrantsBody, add bool) ([]auth.Grant, error)
	Grants(user bool, name string) ([]auth.Grant, error)
	PutGroup(name string, grants []string) error
	DeleteGroup(name string) error
	Groups() ([]auth.Group, error)
	CreateToken(b adminapi.TokenBody) (adminapi.TokenCreated, error)
	RevokeToken(id string) error
	Tokens(user string) ([]auth.TokenInfo, error)
	ImportULWMQ(r io.Reader, group string) (imported, skipped int, err error)
	Close() error
}

// adminFlags choose between the data directory and a running server.
type adminFlags struct {
	dataDir   string
	server    string
	adminUser string
	adminPass string
	adminTok  string
	cafile    string
	cert, key string
}

func (f *adminFlags) register(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.StringVar(&f.dataDir, "data-dir", config.Default().DataDir, "work on this data directory (tern must not be running on it)")
	fs.StringVar(&f.server, "server", "", "work on a running tern through its admin API instead, e.g. http://127.0.0.1:8080")
	fs.StringVar(&f.adminUser, "admin-user", "", "admin user name for --server (password from --admin-password or $TERN_ADMIN_PASSWORD)")
	fs.StringVar(&f.adminPass, "admin-password", "", "the admin user's password (visible to other local users; prefer $TERN_ADMIN_PASSWORD)")
	fs.StringVar(&f.adminTok, "admin-token", "", "admin bearer token for --server (or $TERN_ADMIN_TOKEN)")
	fs.StringVar(&f.cafile, "cafile", "", "CA file (PEM) to trust for an https --server")
	fs.StringVar(&f.cert, "cert", "", "client certificate (PEM) for an https --server with mutual TLS")
	fs.StringVar(&f.key, "key", "", "the client certificate's key (PEM)")
}

// open returns the operations on the chosen target.
func (f *adminFlags) open() (adminOps, error) {
	if f.server != "" {
		return f.remote()
	}
	// Flags meant for a server are refused rather than ignored: whoever gave them believes the
	// change goes to a running tern, and it would land in a data directory instead.
	for _, fl := range []struct{ name, value string }{
		{"--admin-user", f.adminUser}, {"--admin-password", f.adminPass}, {"--admin-token", f.adminTok},
		{"--cafile", f.cafile}, {"--cert", f.cert}, {"--key", f.key},
	} {
		if fl.value != "" {
			return nil, fmt.Errorf("%s needs --server; without it tern works on the data directory %s", fl.name, f.dataDir)
		}
	}
	return openOffline(f.dataDir)
}

// openOffline opens the data directory's store and an authenticator over its records.
func openOffline(dir string) (adminOps, error) {
	if fi, err := os.Stat(filepath.Join(dir, "raft")); err == nil && fi.IsDir() {
		// A change here would reach this node only, and the cluster's own records not at all.
		return nil, fmt.Errorf("data directory %s belongs to a cluster node: its users, groups and tokens are the cluster's; "+
			"use --server URL on a running node", dir)
	}
	st, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		if dirInUse(err) {
			return nil, fmt.Errorf("data directory %s is locked, probably by a running tern: use --server URL (with --admin-user or --admin-token) to go through its admin API, or stop it first (%w)", dir, err)
		}
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	a, err := auth.New(auth.Config{}, st.Records(), nil)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	return &offlineOps{a: a, close: st.Close}, nil
}

// dirInUse tells a directory locked by another store from other failures to open it. Pebble locks
// its LOCK file with fcntl: another process holding it gives EAGAIN (EACCES on some systems; an
// EACCES from creating the file is a permission problem instead, and comes as a PathError), and
// this process holding it gives Pebble's own message.
func dirInUse(err error) bool {
	var pathErr *fs.PathError
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) ||
		(errors.Is(err, syscall.EACCES) && !errors.As(err, &pathErr)) ||
		strings.Contains(err.Error(), "lock held by current process")
}

// withOps runs fn on the target the flags name, closing it after.
func withOps(f *adminFlags, fn func(adminOps) error) error {
	ops, err := f.open()
	if err != nil {
		return err
	}
	err = fn(ops)
	return errors.Join(err, ops.Close())
}
