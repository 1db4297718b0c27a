package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/config"
)

func init() {
	cfgCmd := &cobra.Command{Use: "config", Short: "Check or print the configuration"}
	cfgCmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file (and the TERN_* environment) without starting",
		Long: `Validate a configuration file as tern serve would read it, with the TERN_*
environment on top: unknown keys (with the closest known key), TOML syntax errors (with line
and column) and bad values are reported, and the exit status is 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := config.Load(args[0], nil, config.Environ); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	})
	dump := &cobra.Command{
		Use:   "dump",
		Short: "Print the effective configuration as TOML",
		Long: `Print the configuration tern serve would run with: the embedded defaults, then
--config FILE, then the TERN_* environment. The output is a complete configuration file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("config")
			cfg, err := config.Load(path, nil, config.Environ)
			if err != nil {
				return err
			}
			b, err := config.Dump(cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	dump.Flags().String("config", "", "TOML configuration file")
	cfgCmd.AddCommand(dump)
	rootCmd.AddCommand(cfgCmd)

	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version, the source revision and the Go version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), versionString()) },
	})
	rootCmd.Version = versionString()
	rootCmd.SetVersionTemplate("{{.Version}}\n")
}

// versionString is the module version (or -ldflags' main.version), the VCS revision with a mark
// when the tree was modified, and the Go version, from the build info that go build and
// go install record.
func versionString() string {
	v, rev, goVersion := version, "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && modified {
			rev += "+modified"
		}
	}
	out := "tern " + v
	if rev != "" {
		out += " (" + rev + ")"
	}
	if goVersion != "" {
		out += " " + goVersion
	}
	return out
}
