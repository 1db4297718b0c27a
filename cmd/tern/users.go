package main

// tern user, tern group, tern grant, tern token: who may connect and what they may do.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
)

func init() {
	rootCmd.AddCommand(newUserCmd(), newGroupCmd(), newGrantCmd(), newTokenCmd())
}

const grantHelp = `A grant is action:filter. Actions: publish, subscribe, retain, call, serve, push, query,
route, admin. The filter is an MQTT topic filter where %u stands for the identity and %c for
the client id, e.g. publish:sensors/%u/# or subscribe:public/#. deny:action:filter refuses
instead, whatever allows it: a topic it matches, or a subscription filter it covers, e.g.
deny:subscribe:test/nosubscribe.`

// passwordInput reads the password the flags give: --password-stdin (one line) or --password.
type passwordInput struct {
	value string
	stdin bool
}

func (p *passwordInput) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&p.stdin, "password-stdin", false, "read the password from the first line of stdin")
	cmd.Flags().StringVar(&p.value, "password", "", "the password (visible to other local users; prefer --password-stdin)")
	cmd.MarkFlagsMutuallyExclusive("password", "password-stdin")
}

// read returns the password, nil if neither flag was given. An empty one is refused, also when
// given as --password "": a user meant to have none is added without either flag.
func (p *passwordInput) read(cmd *cobra.Command) (*string, error) {
	switch {
	case p.stdin:
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the password from stdin: %w", err)
		}
		p.value = strings.TrimRight(line, "\r\n")
	case !cmd.Flags().Changed("password"):
		return nil, nil
	}
	if p.value == "" {
		return nil, errors.New("empty password refused")
	}
	return &p.value, nil
}

func newUserCmd() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Add, change, remove and list users",
		Long: "Users sign in with a password (hashed with argon2id), or by a client certificate whose\n" +
			"identity is their name, or with tokens (tern token). " + grantHelp,
		Example: `  tern user add alice --grant 'publish:users/%u/#' --password-stdin <<< 's3cret'
  tern user add sensor-1 --grant 'publish:sensors/%u/#'        # certificate only
  tern user passwd alice --password-stdin
  tern user list --server http://127.0.0.1:8080 --admin-user root
  tern user import-ulwmq /var/lib/ulightwmq/users.db --group legacy`,
		Args: cobra.NoArgs,
	}
	af.register(cmd)

	var pw passwordInput
	var groups, grants []string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := pw.read(cmd)
			if err != nil {
				return err
			}
			return withOps(&af, func(ops adminOps) error {
				if _, err := ops.User(args[0]); err == nil {
					return fmt.Errorf("user %q exists (tern user passwd, tern grant add change it)", args[0])
				} else if !errors.Is(err, auth.ErrNotFound) {
					return err
				}
				if err := ops.PutUser(args[0], adminapi.UserBody{Password: p, Groups: groups, Grants: grants}); err != nil {
					return err
				}
				warnMissingGroups(cmd, ops, groups)
				return nil
			})
		},
	}
	pw.register(add)
	add.Flags().StringArrayVar(&groups, "group", nil, "a group the user belongs to (repeatable)")
	add.Flags().StringArrayVar(&grants, "grant", nil, "a grant, action:filter or deny:action:filter (repeatable)")

	var pw2 passwordInput
	passwd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Set a user's password",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := pw2.read(cmd)
			if err != nil {
				return err
			}
			if p == nil {
				return errors.New("give --password-stdin or --password")
			}
			return withOps(&af, func(ops adminOps) error { return ops.SetPassword(args[0], *p) })
		},
	}
	pw2.register(passwd)

	del := &cobra.Command{
		Use: "del NAME", Short: "Remove a user and revoke its tokens", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOps(&af, func(ops adminOps) error { return ops.DeleteUser(args[0]) })
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOps(&af, func(ops adminOps) error {
				us, err := ops.Users()
				if err != nil {
					return err
				}
				if len(us) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no users (tern user add NAME)")
					return nil
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tPASSWORD\tGROUPS\tGRANTS")
				for _, u := range us {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, orDash(u.PasswordScheme),
						orDash(strings.Join(u.Groups, ",")), orDash(strings.Join(grantStrings(u.Grants), " ")))
				}
				return tw.Flush()
			})
		},
	}
	var importGroup string
	imp := &cobra.Command{
		Use:   "import-ulwmq PATH/users.db",
		Short: "Import uLightWMQ's users; their SHA-256 hashes become argon2id at the first login",
		Long: `Import uLightWMQ's users; their SHA-256 hashes become argon2id at the first login.
A database in WAL mode is read with the users.db-wal beside it, as SQLite would open it. Stop
uLightWMQ first, or import a copy made with: sqlite3 users.db "VACUUM INTO 'users-copy.db'"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			image, frames, err := auth.ReadULWMQFile(args[0])
			if err != nil {
				return err
			}
			if frames > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "applied %d committed frames of %s-wal\n", frames, args[0])
			}
			return withOps(&af, func(ops adminOps) error {
				n, skipped, err := ops.ImportULWMQ(bytes.NewReader(image), importGroup)
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "imported %d users, skipped %d\n", n, skipped)
				}
				return err
			})
		},
	}
	imp.Flags().StringVar(&importGroup, "group", "", "a group the imported users join")
	cmd.AddCommand(add, passwd, del, list, imp)
	return cmd
}

func newGroupCmd() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{Use: "group", Short: "Add, remove and list groups (named lists of grants)", Args: cobra.NoArgs}
	af.register(cmd)
	add := &cobra.Command{
		Use: "add NAME [GRANT...]", Short: "Create or replace a group", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOps(&af, func(ops adminOps) error { return ops.PutGroup(args[0], args[1:]) })
		},
	}
	del := &cobra.Command{
		Use: "del NAME", Short: "Remove a group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOps(&af, func(ops adminOps) error { return ops.DeleteGroup(args[0]) })
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOps(&af, func(ops adminOps) error {
				gs, err := ops.Groups()
				if err != nil {
					return err
				}
				if len(gs) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no groups (tern group add NAME GRANT...)")
					return nil
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tGRANTS")
				for _, g := range gs {
					fmt.Fprintf(tw, "%s\t%s\n", g.Name, orDash(strings.Join(grantStrings(g.Grants), " ")))
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(add, del, list)
	return cmd
}

func newGrantCmd() *cobra.Command {
	var af adminFlags
	var user, group string
	cmd := &cobra.Command{
		Use:   "grant",
		Short: "Add, remove and list the grants of a user or group",
		Long:  grantHelp,
		Example: `  tern grant add --user alice 'retain:users/alice/status' 'subscribe:news/#'
  tern grant del --group ops 'subscribe:$SYS/#'
  tern grant list --user alice`,
		Args: cobra.NoArgs,
	}
	af.register(cmd)
	cmd.PersistentFlags().StringVar(&user, "user", "", "the user")
	cmd.PersistentFlags().StringVar(&group, "group", "", "the group")
	target := func() (adminapi.GrantsBody, error) {
		if (user == "") == (group == "") {
			return adminapi.GrantsBody{}, errors.New("give --user or --group")
		}
		return adminapi.GrantsBody{User: user, Group: group}, nil
	}
	edit := func(add bool) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			b, err := target()
			if err != nil {
				return err
			}
			b.Grants = args
			return withOps(&af, func(ops adminOps) error {
				gs, err := ops.EditGrants(b, add)
				if err == nil {
					fmt.Fprintln(cmd.OutOrStdout(), strings.Join(grantStrings(gs), "\n"))
				}
				return err
			})
		}
	}
	cmd.AddCommand(
		&cobra.Command{Use: "add GRANT...", Short: "Add grants", Args: cobra.MinimumNArgs(1), RunE: edit(true)},
		&cobra.Command{Use: "del GRANT...", Short: "Remove grants", Args: cobra.MinimumNArgs(1), RunE: edit(false)},
		&cobra.Command{Use: "list", Short: "List grants", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				b, err := target()
				if err != nil {
					return err
				}
				return withOps(&af, func(ops adminOps) error {
					gs, err := ops.Grants(b.User != "", b.User+b.Group)
					if err != nil {
						return err
					}
					if len(gs) == 0 {
						// Said on stderr: stdout is one grant a line, for scripts.
						fmt.Fprintln(cmd.ErrOrStderr(), "no grants")
						return nil
					}
					fmt.Fprintln(cmd.OutOrStdout(), strings.Join(grantStrings(gs), "\n"))
					return nil
				})
			}},
	)
	return cmd
}

func newTokenCmd() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, revoke and list bearer tokens",
		Long: "A token acts for its user with at most the user's grants (the --grant given, or all of\n" +
			"them). Clients send it as the MQTT password with the user name empty or \"token\", or as\n" +
			"an HTTP \"Authorization: Bearer\" header. Only its hash is stored: it is shown once.",
		Example: `  TOKEN=$(tern token create --user alice --grant 'subscribe:sensors/#' --ttl 24h)
  tern token list --user alice
  tern token revoke 3f2a...`,
		Args: cobra.NoArgs,
	}
	af.register(cmd)
	var user, ttl string
	var grants []string
	create := &cobra.Command{
		Use: "create", Short: "Create a token; prints the secret alone on stdout", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" {
				return errors.New("give --user")
			}
			return withOps(&af, func(ops adminOps) error {
				t, err := ops.CreateToken(adminapi.TokenBody{User: user, Grants: grants, TTL: ttl})
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), t.Token)
				fmt.Fprintf(cmd.ErrOrStderr(), "token %s for %s, expires %s\n", t.Info.ID, t.Info.User, expiry(t.Info))
				return nil
			})
		},
	}
	create.Flags().StringVar(&user, "user", "", "the user the token acts for")
	create.Flags().StringArrayVar(&grants, "grant", nil, "a grant, action:filter or deny:action:filter (repeatable; default: all of the user's)")
	create.Flags().StringVar(&ttl, "ttl", "", "lifetime, e.g. 24h (default: no expiry)")
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOps(&af, func(ops adminOps) error { return ops.RevokeToken(args[0]) })
		},
	}
	var listUser string
	list := &cobra.Command{
		Use: "list", Short: "List tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOps(&af, func(ops adminOps) error {
				ts, err := ops.Tokens(listUser)
				if err != nil {
					return err
				}
				if len(ts) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no tokens (tern token create --user NAME)")
					return nil
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tUSER\tEXPIRES\tGRANTS")
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.User, expiry(t), orDash(strings.Join(grantStrings(t.Grants), " ")))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&listUser, "user", "", "only this user's tokens")
	cmd.AddCommand(create, revoke, list)
	return cmd
}

func expiry(t auth.TokenInfo) string {
	if t.Expires.IsZero() {
		return "never"
	}
	return t.Expires.Format("2006-01-02 15:04:05Z07:00")
}

func grantStrings(gs []auth.Grant) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.String()
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// warnMissingGroups tells the operator about groups a user was put in that do not exist (yet):
// they grant nothing until created.
func warnMissingGroups(cmd *cobra.Command, ops adminOps, groups []string) {
	if len(groups) == 0 {
		return
	}
	gs, err := ops.Groups()
	if err != nil {
		return
	}
	have := map[string]bool{}
	for _, g := range gs {
		have[g.Name] = true
	}
	for _, g := range groups {
		if !have[g] {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: group %q does not exist; it grants nothing until created (tern group add %s GRANT...)\n", g, g)
		}
	}
}
