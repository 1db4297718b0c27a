// Package browsertest starts the real browser that tests of web pages drive: Debian's chromium,
// headless, through chromedp. A test skips only when no chromium binary exists at all; CI
// installs one (.ci/run).
package browsertest

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath finds a Chromium binary, "" when there is none.
func ChromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Start runs a headless Chromium for the test (stopped when it ends), with listen receiving the
// pages' events, and returns a context for its actions bounded by timeout. It skips the test when
// there is no chromium.
func Start(t *testing.T, listen func(ev any), timeout time.Duration) context.Context {
	t.Helper()
	path := ChromiumPath()
	if path == "" {
		t.Skip("no chromium binary found (Debian: apt-get install chromium); browser tests need one")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Without these Chromium reaches for Google's hosts, which this network refuses.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if listen == nil {
		listen = func(any) {}
	}
	// The first call starts the browser, under the browser's own context (a deadline there
	// would stop the browser); every later action runs under the test's deadline.
	if err := chromedp.Listen(bctx, listen); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, timeout)
	t.Cleanup(cancel)
	return ctx
}
