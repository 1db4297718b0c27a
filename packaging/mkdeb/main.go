// Command mkdeb builds tern's Debian package from a built binary: the binary, the hardened
// systemd unit and a loopback-only configuration, with nfpm as a library, so that no packaging
// tool needs installing.
//
//	go build -o tern ../cmd/tern && go run ./mkdeb -binary tern -version 0.1.0 -out tern_0.1.0_amd64.deb
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"

	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

func main() {
	binary := flag.String("binary", "tern", "the tern binary to package")
	version := flag.String("version", "0.0.0", "package version")
	arch := flag.String("arch", runtime.GOARCH, "architecture (Go's name: amd64, arm64, ...)")
	out := flag.String("out", "", "output file (default tern_VERSION_ARCH.deb)")
	dir := flag.String("dir", ".", "the packaging directory (tern.service, tern.toml, scripts)")
	flag.Parse()
	if *out == "" {
		*out = fmt.Sprintf("tern_%s_%s.deb", *version, *arch)
	}
	if err := build(*binary, *version, *arch, *dir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

// build writes the package to out.
func build(binary, version, arch, dir, out string) error {
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:        "tern",
		Arch:        arch,
		Platform:    "linux",
		Version:     version,
		Section:     "net",
		Priority:    "optional",
		Maintainer:  "tern <tern@localhost>",
		Description: "small, fast, secure message broker (MQTT, HTTP, mBus)",
		Homepage:    "https://github.com/ternmq/tern",
		License:     "Apache-2.0",
		Overridables: nfpm.Overridables{
			Contents: files.Contents{
				{Source: binary, Destination: "/usr/bin/tern", FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				{Source: filepath.Join(dir, "tern.service"), Destination: "/lib/systemd/system/tern.service",
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: filepath.Join(dir, "tern.toml"), Destination: "/etc/tern/tern.toml", Type: files.TypeConfigNoReplace,
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
			},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(dir, "postinst.sh"),
				PreRemove:   filepath.Join(dir, "prerm.sh"),
				PostRemove:  filepath.Join(dir, "postrm.sh"),
			},
		},
	})
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := pkg.Package(info, f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
