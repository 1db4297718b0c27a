package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPackageInstallsAndServiceRuns builds tern and its package, installs it with dpkg -i, checks
// what it put where, runs the service, and purges it. It changes the machine, so it runs only as
// root with dpkg and no tern package installed before (CI's machine).
//
// Where systemd runs, postinst started the service: the test asks systemd. In a container without
// systemd (CI here), it runs the unit's ExecStart as systemd would: as an unprivileged user, in
// the state directory, with the runtime directory made.
func TestPackageInstallsAndServiceRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installs a package: needs root")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg")
	}
	if exec.Command("dpkg", "-s", "tern").Run() == nil {
		t.Skip("a tern package is installed already; not touching it")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tern")
	// tern is another module: build it from its own directory.
	b := exec.Command("go", "build", "-o", bin, "./cmd/tern")
	b.Dir = "../.."
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	deb := filepath.Join(dir, "tern_0.0.1_test.deb")
	if err := build(bin, "0.0.1", "amd64", "..", deb); err != nil {
		t.Fatal(err)
	}
	run(t, "dpkg", "-i", deb)
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "-P", "tern").CombinedOutput(); err != nil {
			t.Errorf("dpkg -P: %v\n%s", err, out)
		}
		for _, p := range []string{"/usr/bin/tern", "/lib/systemd/system/tern.service", "/etc/tern/tern.toml"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s is still there after purge", p)
			}
		}
	})
	for _, p := range []string{"/usr/bin/tern", "/lib/systemd/system/tern.service", "/etc/tern/tern.toml"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("not installed: %v", err)
		}
	}
	// The packaged configuration is valid for the packaged binary, and systemd reads the unit
	// without a complaint.
	run(t, "/usr/bin/tern", "config", "check", "/etc/tern/tern.toml")
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		out, _ := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/tern.service").CombinedOutput()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" && strings.Contains(line, "tern.service") {
				t.Errorf("systemd-analyze verify: %s", line)
			}
		}
	}

	if _, err := os.Stat("/run/systemd/system"); err == nil {
		run(t, "systemctl", "is-active", "tern.service")
		return
	}
	unit, err := os.ReadFile("/lib/systemd/system/tern.service")
	if err != nil {
		t.Fatal(err)
	}
	var execStart string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
	}
	args := strings.Fields(execStart)
	if len(args) == 0 || args[0] != "/usr/bin/tern" {
		t.Fatalf("ExecStart %q", execStart)
	}
	// StateDirectory, RuntimeDirectory and DynamicUser, by hand: user nobody owns them.
	for _, d := range []string{"/var/lib/tern", "/run/tern"} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
		must(t, os.Chown(d, 65534, 65534))
	}
	t.Cleanup(func() { _ = os.RemoveAll("/run/tern") })
	mqttAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = "/var/lib/tern"
	cmd.Env = append(os.Environ(), "TERN_LISTEN__MQTT="+mqttAddr, "TERN_LISTEN__HTTP="+httpAddr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the service did not stop cleanly on SIGTERM: %v\n%s", err, out)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("the service did not stop within 30 s of SIGTERM")
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the service exited: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service did not answer /healthz within 30 s\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat("/var/lib/tern/data"); err != nil {
		t.Fatalf("no data directory in the state directory: %v", err)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
