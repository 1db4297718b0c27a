// Command tern is the tern message broker and its command-line client.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
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

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tern:", err)
		os.Exit(1)
	}
}
