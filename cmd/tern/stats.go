package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/server"
)

func init() {
	var url string
	var top int
	var asJSON bool
	var af adminFlags
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show a running server's sessions, queue depths, drops and store size",
		Long: "stats asks a running tern (its HTTP listener, GET /v1/stats) for its figures: sessions,\n" +
			"queued messages, messages dropped or refused by queue limits, store size, and the sessions\n" +
			"with the deepest queues.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, raw, err := fetchStats(url, top, &af)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			printStats(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "server", "http://127.0.0.1:8080", "the server's HTTP listener")
	cmd.Flags().IntVar(&top, "sessions", 20, "how many sessions to list (deepest queues first)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the JSON as the server sent it")
	cmd.Flags().StringVar(&af.adminUser, "admin-user", "", "admin user name once authentication is on (password from $TERN_ADMIN_PASSWORD)")
	cmd.Flags().StringVar(&af.adminTok, "admin-token", "", "admin bearer token (or $TERN_ADMIN_TOKEN)")
	cmd.Flags().StringVar(&af.cafile, "cafile", "", "CA file (PEM) to trust for an https --server")
	renamedFlags(cmd, map[string]string{"url": "server"})
	rootCmd.AddCommand(cmd)
}

func fetchStats(base string, top int, af *adminFlags) (server.Stats, []byte, error) {
	var st server.Stats
	af.server = base
	r, err := af.remote()
	if err != nil {
		return st, nil, err
	}
	req, err := http.NewRequest("GET", fmt.Sprintf("%s/v1/stats?sessions=%d", r.base, top), nil)
	if err != nil {
		return st, nil, err
	}
	r.auth(req)
	resp, err := r.c.Do(req)
	if err != nil {
		return st, nil, fmt.Errorf("is tern running? %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return st, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, nil, fmt.Errorf("GET /v1/stats: %s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("reading stats: %w", err)
	}
	return st, raw, nil
}

func authSummary(a server.AccessStats) string {
	if a.Open {
		return "off (no users, tokens or auth URL)"
	}
	return fmt.Sprintf("%d accepted, %d refused", a.Accepted, a.AuthRefused)
}

func printStats(w io.Writer, st server.Stats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	store := "memory only"
	if st.Store.DataDir != "" {
		store = fmt.Sprintf("%s (sync %s), %s on disk", st.Store.DataDir, st.Store.Sync, humanBytes(st.Store.DiskBytes))
	}
	rows := [][2]string{
		{"sessions", fmt.Sprintf("%d (%d connected)", st.Sessions, st.Connected)},
		{"subscriptions", fmt.Sprint(st.Subscriptions)},
		{"retained", fmt.Sprint(st.Retained)},
		{"queued", fmt.Sprint(st.Queued)},
		{"received / delivered", fmt.Sprintf("%d / %d", st.Received, st.Delivered)},
		{"dropped: queue full", fmt.Sprint(st.DroppedQueueFull)},
		{"refused: queue full", fmt.Sprint(st.RefusedQueueFull)},
		{"dropped: slow / offline QoS 0", fmt.Sprintf("%d / %d", st.DroppedSlow, st.DroppedOffline)},
		{"expired", fmt.Sprint(st.Expired)},
		{"store", store},
		{"store errors", fmt.Sprint(st.StoreErrors)},
		{"authentication", authSummary(st.Access)},
		{"refused: not granted", fmt.Sprint(st.Access.NotAuthorized)},
		{"refused: connections / client id", fmt.Sprintf("%d / %d", st.Access.RefusedConnections, st.Access.RefusedClientID)},
		{"refused: rate / payload", fmt.Sprintf("%d / %d", st.Access.RefusedRate, st.Access.RefusedPayload)},
		{"throttled publishes", fmt.Sprint(st.Access.Throttled)},
	}
	if c := st.Cluster; c != nil {
		up := 0
		for _, m := range c.Members {
			if m.Link == "up" {
				up++
			}
		}
		rows = append(rows, [2]string{"cluster", fmt.Sprintf("node %s (%s), leader %s, %d members, %d links up, commit %d applied %d",
			c.Node, c.State, valueOr(c.Leader, "none"), len(c.Members), up, c.CommitIndex, c.AppliedIndex)},
			[2]string{"cluster messages", fmt.Sprintf("%d forwarded, %d received, %d dropped, %d not accepted", c.Forwarded, c.Received, c.Dropped, c.Failed)})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	_ = tw.Flush()
	if st.Route != nil {
		printRoute(w, st.Route)
	}
	if len(st.TopSessions) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "CLIENT ID\tIDENTITY\tONLINE\tDURABLE\tSUBS\tQUEUED\tBYTES\tIN FLIGHT\tDROPPED\tREFUSED")
	for _, s := range st.TopSessions {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\t%d\t%s\t%d\t%d\t%d\n", s.ClientID, cmp.Or(s.Identity, "-"), s.Online, s.Durable,
			s.Subscriptions, s.Queued, humanBytes(s.QueuedBytes), s.Inflight, s.Dropped, s.Refused)
	}
	_ = tw.Flush()
}

// printRoute prints tiered routing: the uplinks of a site router, the sites of a designated one.
func printRoute(w io.Writer, r *server.RouteStats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w)
	fmt.Fprintf(tw, "router id\t%s\n", r.RouterID)
	if len(r.Designated) > 0 {
		fmt.Fprintf(tw, "designated for\t%s\n", strings.Join(r.Designated, ", "))
		fmt.Fprintf(tw, "from sites: duplicates / gaps\t%d / %d\n", r.RoutedDuplicates, r.RoutedGaps)
	}
	fmt.Fprintf(tw, "stale queries\t%d\n", r.StaleQueries)
	_ = tw.Flush()
	if len(r.Uplinks) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "UPLINK\tCONNECTED\tQUEUED\tBYTES\tOLDEST\tIN FLIGHT\tSENT\tACKED\tREFUSED\tDROPPED\tEXPIRED\tRECONNECTS\tDOWN\tDOWN DUPS/GAPS")
		for _, u := range r.Uplinks {
			fmt.Fprintf(tw, "%s\t%v\t%d\t%s\t%.1fs\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d/%d\n", u.Name, u.Connected, u.Queued,
				humanBytes(u.QueuedBytes), u.OldestAgeSeconds, u.Inflight, u.Sent, u.Acked, u.RefusedUpstream,
				u.DroppedFull+u.RefusedFull, u.Expired, u.Reconnects, u.Received, u.DownDuplicates, u.DownGaps)
		}
		_ = tw.Flush()
		for _, u := range r.Uplinks {
			if !u.Connected && u.LastError != "" {
				fmt.Fprintf(w, "uplink %s: %s\n", u.Name, u.LastError)
			}
		}
	}
	if len(r.Peers) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "SITE SESSION\tONLINE\tTAKEN\tDUPLICATES\tGAPS\tQUEUED")
		for _, p := range r.Peers {
			fmt.Fprintf(tw, "%s\t%v\t%d\t%d\t%d\t%d\n", p.ClientID, p.Online, p.Taken, p.RoutedDuplicates, p.RoutedGaps, p.Queued)
		}
		_ = tw.Flush()
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
