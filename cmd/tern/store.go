package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/store/pebblestore"
)

// errDamaged makes `tern store check` exit non-zero after it has printed its findings.
var errDamaged = errors.New("the data directory is damaged")

func init() {
	storeCmd := &cobra.Command{Use: "store", Short: "Inspect the durable store"}
	var dir string
	check := &cobra.Command{
		Use:   "check",
		Short: "Report damage in a data directory, changing nothing",
		Long: `Check a data directory without writing to it: the write-ahead logs, the database
(opened read-only), its format version, and every stored value (which verifies each
table block's checksum). It prints what it finds and exits with status 1 when the
directory is damaged. Run it while tern is stopped: a running tern holds the directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := pebblestore.Check(dir, nil, nil)
			if err != nil {
				if dirInUse(err) {
					return fmt.Errorf("data directory %s is locked, probably by a running tern: stop it first (%w)", dir, err)
				}
				return fmt.Errorf("data directory %s: %w", dir, err)
			}
			out := cmd.OutOrStdout()
			for _, n := range rep.Notes {
				fmt.Fprintln(out, "note:", n)
			}
			if rep.Empty {
				fmt.Fprintf(out, "%s: empty (tern creates a store here)\n", dir)
				return nil
			}
			if len(rep.Damage) == 0 {
				fmt.Fprintf(out, "%s: ok, %d keys read\n", dir, rep.Keys)
				return nil
			}
			for _, d := range rep.Damage {
				fmt.Fprintln(out, "damaged:", d.String())
			}
			return errDamaged
		},
	}
	check.Flags().StringVar(&dir, "data-dir", config.Default().DataDir, "the data directory to check")
	storeCmd.AddCommand(check)
	rootCmd.AddCommand(storeCmd)
}
