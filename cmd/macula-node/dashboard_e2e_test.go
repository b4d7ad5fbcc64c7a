package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// chromiumPath is Debian's Chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// TestDashboardInBrowser opens the dashboard of a `macula-node dev --nodes
// 4` mesh in headless Chromium, checks that it draws 4 nodes and their 6
// links, makes calls and publishes through the API and waits for the
// page's rates to move, and saves screenshots at a desktop and a phone
// width (in $MACULA_SCREENSHOTS, or the test's temporary directory).
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: %v (.ci/run installs chromium)", chromiumPath, err)
		}
		t.Skipf("no %s: apt-get install chromium", chromiumPath)
	}
	t.Parallel()
	p := startProc(t, "dev", nil, "dev", "--nodes", "4")
	apis := devAPIs(t, p, 4)
	base := "http://" + apis["node1"]

	// A webhook that echoes, advertised through node2's API; node1 calls
	// it. node1 subscribes to the orders and publishes them.
	echo := devRealm + ".echo"
	hook := echoWebhook(t)
	c1, c2 := api.NewClient(apis["node1"]), api.NewClient(apis["node2"])
	defer c1.Close()
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c2.Advertise(ctx, echo, hook, 0); err != nil {
		t.Fatalf("advertise: %v", err)
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		_, err := c1.Call(ctx, echo, []byte(`"hi"`), api.CallOptions{ContentType: "application/json"})
		return err
	})
	sub, err := c1.Subscribe(ctx, devRealm+".orders.*")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	dir := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(dir), chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("opening %s: %v", base, err)
	}

	// The mesh: 4 nodes, 6 links (every node sees the 3 others).
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](
		`(e => e && e.dataset.nodes === "4" && e.dataset.links === "6" && document.querySelectorAll("#mesh .mesh-node").length === 4 && document.querySelectorAll("#mesh line.link").length === 6)(document.getElementById("mesh-count"))`,
		chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		txt, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("mesh-count").textContent`))
		t.Fatalf("the dashboard does not show 4 nodes and 6 links: %v (it says %q)", err, txt)
	}
	name, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("node-name").textContent`))
	if err != nil || name != "node1" {
		t.Errorf("node name on the page = %q, %v", name, err)
	}

	// Traffic: calls and publishes through node1's API until the page's
	// rates move (bounded by the test's context).
	traffic, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for traffic.Err() == nil {
			_, _ = c1.Call(traffic, echo, []byte(`{"n":1}`), api.CallOptions{ContentType: "application/json"})
		}
	}()
	go func() {
		defer wg.Done()
		for traffic.Err() == nil {
			_ = c1.Publish(traffic, devRealm+".orders.placed", []byte(`{"id":1}`), "application/json")
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go func() { // drain the subscription, so that nothing is dropped
		for {
			if _, err := sub.Next(); err != nil {
				return
			}
		}
	}()
	rate := func(sel string) string {
		return fmt.Sprintf(`(e => e ? parseFloat(e.textContent.replace(/,/g, "")) : 0)(document.querySelector(%q))`, sel)
	}
	moving := fmt.Sprintf(`%s > 0 && %s > 0 && %s > 0`,
		rate(`tr[data-procedure="`+echo+`"] .calls-rate`),
		rate(`tr[data-topic="`+devRealm+`.orders.placed"] .publish-rate`),
		rate(`tr[data-pattern="`+devRealm+`.orders.*"] .deliver-rate`))
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](moving, chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		html, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
		stopTraffic()
		wg.Wait()
		t.Fatalf("the rates did not move: %v; the page says:\n%s", err, html)
	}
	calls, _ := chromedp.Run(bctx, chromedp.Evaluate[float64](rate(`tr[data-procedure="`+echo+`"] .calls-rate`)))
	t.Logf("the page shows %v calls/s of %s", calls, echo)

	// Everything the page loaded came from the node: no CDN, works
	// offline.
	urls, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`performance.getEntriesByType("resource").map(e => e.name).concat([location.href])`))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, base+"/") {
			t.Errorf("the page loaded %s, not from its node", u)
		}
	}

	shots := os.Getenv("MACULA_SCREENSHOTS")
	if shots == "" {
		shots = dir
	}
	for _, s := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{{"dashboard-desktop.png", 1280, 900, false}, {"dashboard-phone.png", 390, 844, true}} {
		vo := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
		if s.mobile {
			vo = append(vo, chromedp.EmulateMobile, chromedp.EmulatePortrait)
		}
		if err := chromedp.Do(bctx, chromedp.EmulateViewport(s.width, s.height, vo...)); err != nil {
			t.Fatal(err)
		}
		// Two snapshots at the new width, so the rates are drawn again.
		time.Sleep(2 * time.Second)
		if s.mobile {
			// The page fits the phone's width: nothing wider than it but
			// the tables, which scroll inside their cards.
			wide, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
			if err != nil || wide > int(s.width)+1 {
				t.Errorf("at %d px the page is %d px wide (%v)", s.width, wide, err)
			}
		}
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(shots, s.name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s (%d bytes)", path, len(png))
	}
	stopTraffic()
	wg.Wait()
	bcancel()
	acancel()
	if code := p.stop(t, syscall.SIGINT, 20*time.Second); code != 0 {
		t.Errorf("dev exited with %d", code)
	}
}

// devAPIs waits for dev's table and returns the API address of each node.
func devAPIs(t *testing.T, p *proc, nodes int) map[string]string {
	t.Helper()
	apis := map[string]string{}
	testnet.Eventually(t, 60*time.Second, func() error {
		if p.exited() {
			t.Fatalf("dev exited (%v); stderr:\n%s", p.err, p.stderr.String())
		}
		out := p.stdout.String()
		if !strings.Contains(out, "Ctrl-C") {
			return errors.New("no table yet")
		}
		for _, line := range strings.Split(out, "\n") {
			if m := devRow.FindStringSubmatch(line); m != nil {
				apis[m[1]] = m[5]
			}
		}
		if len(apis) != nodes {
			return fmt.Errorf("rows for %v in:\n%s", apis, out)
		}
		return nil
	})
	return apis
}

// echoWebhook serves a webhook on loopback that answers with the request's
// body, until the test ends.
func echoWebhook(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/echo"
}
