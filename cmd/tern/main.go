// Command tern is the tern message broker and its command-line client.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// rootCmd is the top of the command tree; each command file adds itself in an init function.
var rootCmd = &cobra.Command{
	Use:           "tern",
	Short:         "tern is a small, fast, secure message broker",
	SilenceUsage:  true,
	SilenceErrors: true,
}

// One name per concept in every command: --server is a running tern's HTTP listener (stats,
// cluster, user, group, grant, token), --url an MQTT broker (pub, sub, req, reply, bench),
// --cafile the CA to trust. Earlier names keep working, unlisted: --cacert everywhere, and --url
// on the commands that now take --server (renamedURL).
var renamedURL = map[string]bool{}

func init() { rootCmd.SetGlobalNormalizationFunc(normalizeFlag) }

// normalizeFlag maps earlier flag names to today's.
func normalizeFlag(f *pflag.FlagSet, name string) pflag.NormalizedName {
	switch {
	case name == "cacert":
		name = "cafile"
	case name == "url" && renamedURL[f.Name()]:
		name = "server"
	}
	return pflag.NormalizedName(name)
}

// renamedFlags records that cmd's --url is now --server.
func renamedFlags(cmd *cobra.Command, _ map[string]string) {
	renamedURL[cmd.Name()] = true
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tern:", err)
		os.Exit(1)
	}
}
