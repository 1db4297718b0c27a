package main

// tern cluster status / leave / remove: a running node's view of its cluster, asking a node to
// leave, and removing a node that is gone for good.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/cluster"
)

func init() { rootCmd.AddCommand(newClusterCmd()) }

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show a cluster node's view of its cluster, make a node leave, or remove a dead one",
		Long: `A cluster node is a tern started with --node-id and --cluster-listen (and --join to enter an
existing cluster). These commands ask a running node through its HTTP listener (admin on
"cluster" once authentication is on).`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newClusterStatusCmd(), newClusterLeaveCmd(), newClusterRemoveCmd())
	return cmd
}

func clusterFlags(cmd *cobra.Command, url *string, af *adminFlags) {
	cmd.Flags().StringVar(url, "server", "http://127.0.0.1:8080", "the node's HTTP listener")
	cmd.Flags().StringVar(&af.adminUser, "admin-user", "", "admin user name once authentication is on (password from $TERN_ADMIN_PASSWORD)")
	cmd.Flags().StringVar(&af.adminTok, "admin-token", "", "admin bearer token (or $TERN_ADMIN_TOKEN)")
	cmd.Flags().StringVar(&af.cafile, "cafile", "", "CA file (PEM) to trust for an https --server")
	renamedFlags(cmd, map[string]string{"url": "server"})
}

// clusterCall sends one request to a node's cluster endpoint and returns the body of a 2xx.
func clusterCall(method, base, path string, af *adminFlags) ([]byte, error) {
	af.server = base
	r, err := af.remote()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(method, r.base+path, nil)
	if err != nil {
		return nil, err
	}
	r.auth(req)
	resp, err := r.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is tern running? %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(raw)))
	}
	return raw, nil
}

func newClusterStatusCmd() *cobra.Command {
	var (
		url    string
		asJSON bool
		af     adminFlags
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Members, leader, raft indexes, lag and links, as one node sees them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := clusterCall("GET", url, "/v1/cluster", &af)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			var st cluster.Status
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("reading the status: %w", err)
			}
			printClusterStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	clusterFlags(cmd, &url, &af)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the JSON as the node sent it")
	return cmd
}

func printClusterStatus(w io.Writer, st cluster.Status) {
	leader := st.Leader
	if leader == "" {
		leader = "none (election under way, or no majority reachable)"
	}
	fmt.Fprintf(w, "node %s: %s, term %d, leader %s\n", st.Node, st.State, st.Term, leader)
	fmt.Fprintf(w, "raft: commit %d, applied %d, last %d\n", st.CommitIndex, st.AppliedIndex, st.LastIndex)
	fmt.Fprintf(w, "messages: %d forwarded, %d received, %d dropped, %d not accepted\n\n", st.Forwarded, st.Received, st.Dropped, st.Failed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tROLE\tLINK\tAPPLIED\tLAG\tLAST CONTACT\tINTEREST")
	for _, m := range st.Members {
		role := "follower"
		switch {
		case m.Leader:
			role = "leader"
		case !m.Voter:
			role = "non-voter"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\n", m.ID, m.Address, role, m.Link, m.AppliedIndex, m.Lag,
			valueOr(m.LastContact, "-"), m.Interest)
	}
	_ = tw.Flush()
}

func valueOr(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func newClusterLeaveCmd() *cobra.Command {
	var (
		url string
		af  adminFlags
	)
	cmd := &cobra.Command{
		Use:   "leave",
		Short: "Remove a running node from its cluster; the node then stops",
		Long: `leave asks the node at --server to leave its cluster: a leader hands its leadership to another
node first, the cluster removes the node from its membership, and the node stops. Its data
directory then belongs to no cluster; remove its raft/ directory before it joins one again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := clusterCall("POST", url, "/v1/cluster/leave", &af); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "the node left the cluster and is stopping")
			return nil
		},
	}
	clusterFlags(cmd, &url, &af)
	return cmd
}

func newClusterRemoveCmd() *cobra.Command {
	var (
		server string
		force  bool
		af     adminFlags
	)
	cmd := &cobra.Command{
		Use:   "remove NODE-ID",
		Short: "Remove a node that is gone for good from the cluster, through any live node",
		Long: `remove asks the node at --server to take NODE-ID out of the cluster's membership; the live
nodes then take up its persistent sessions. It is for a node that will not come back (its
machine is lost): a node that still runs should leave instead (tern cluster leave).

Without --force it refuses a node that the node at --server still reaches, and a removal after
which fewer than a majority of the remaining voters would be reachable.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/cluster/remove/" + url.PathEscape(args[0])
			if force {
				path += "?force=true"
			}
			if _, err := clusterCall("POST", server, path, &af); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s removed from the cluster\n", args[0])
			return nil
		},
	}
	clusterFlags(cmd, &server, &af)
	cmd.Flags().BoolVar(&force, "force", false, "remove even a reachable node, or one whose removal leaves no majority reachable")
	return cmd
}
