package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/internal/testnet"
)

// TestRegistryEndToEnd runs three macula-node processes on loopback and
// uses the registry through their APIs and the CLI: names and groups
// replicate, prefix queries, monitors (registry watch), dispatch with one
// message per node, a named cluster that only its nodes see, a process
// whose API stream closes, a node that stops cleanly, one that is killed
// (the name it held becomes free and another node takes it), and a node
// that comes back (nothing of its former life returns).
func TestRegistryEndToEnd(t *testing.T) {
	t.Parallel()
	const realmName = "io.e2e.registry"
	a := startRunNode(t, realmName, "a")
	a.waitReady(t)
	boot := a.st.Addrs[0]
	b := startRunNode(t, realmName, "b", boot)
	c := startRunNode(t, realmName, "c", boot)
	b.waitReady(t)
	c.waitReady(t)
	nodes := []*runNode{a, b, c}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	clients := map[*runNode]*api.Client{}
	for _, n := range nodes {
		clients[n] = apiClient(t, n)
	}
	// Every registry links to the two others.
	for _, n := range nodes {
		testnet.Eventually(t, 30*time.Second, func() error {
			info, err := clients[n].Registry(ctx)
			if err != nil {
				return err
			}
			if got := len(info.Clusters[0].Nodes); got != 3 {
				return fmt.Errorf("%d nodes", got)
			}
			return nil
		})
	}
	procs := map[*runNode]*api.ProcessStream{}
	for _, n := range nodes {
		p, err := clients[n].OpenProcess(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		procs[n] = p
	}

	// A watch on c, through the CLI.
	watch := startProc(t, "watch on c", nil, "--api", c.st.API, "registry", "watch", "svc/", "--count", "2")
	testnet.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(watch.stderr.String(), "watching svc/") {
			return errors.New("not yet")
		}
		return nil
	})

	// A name on a reaches b and c; a second registration is refused.
	if _, err := clients[a].Register(ctx, procs[a].Info().ID, "svc/leader", json.RawMessage(`{"v":1}`), ""); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		testnet.Eventually(t, 30*time.Second, func() error {
			e, err := clients[n].Lookup(ctx, "svc/leader", "")
			if err != nil {
				return err
			}
			if e.Addr != procs[a].Info().Addr {
				return fmt.Errorf("owner %s", e.Addr)
			}
			return nil
		})
	}
	_, err := clients[b].Register(ctx, procs[b].Info().ID, "svc/leader", nil, "")
	if apiCode(err) != api.CodeTaken {
		t.Fatalf("a second registration on b: %v", err)
	}
	if r := runCmd(t, 20*time.Second, nil, "--api", c.st.API, "registry", "ls", "svc/"); r.code != 0 || !strings.Contains(r.stdout, "svc/leader") || !strings.Contains(r.stdout, procs[a].Info().Addr) {
		t.Fatalf("registry ls on c: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Groups: b and c join, everyone sees both under the prefix.
	for _, n := range nodes[1:] {
		if err := clients[n].Join(ctx, procs[n].Info().ID, "chat/"+n.name, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		r := runCmd(t, 20*time.Second, nil, "--api", a.st.API, "groups", "ls", "chat/", "--json")
		var ms []api.RegistryMember
		if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil {
			return fmt.Errorf("%v: %s%s", err, r.stdout, r.stderr)
		}
		if len(ms) != 2 {
			return fmt.Errorf("%d members", len(ms))
		}
		return nil
	})
	// Dispatch from a: b and c get it.
	if r := runCmd(t, 20*time.Second, nil, "--api", a.st.API, "registry", "dispatch", "chat/", "--data", `{"hi":1}`); r.code != 0 || !strings.Contains(r.stdout, "dispatched to 2") {
		t.Fatalf("dispatch: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, n := range nodes[1:] {
		m, err := procs[n].Next()
		if err != nil || string(m.Payload) != `{"hi":1}` {
			t.Fatalf("%s got %+v, %v", n.name, m, err)
		}
	}

	// The CLI holds a name for as long as it runs, and prints what is sent
	// to it.
	hold := startProc(t, "registry register on a", nil, "--api", a.st.API, "registry", "register", "cli/holder", "--meta", `{"by":"cli"}`)
	testnet.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(hold.stderr.String(), "registered cli/holder as ") {
			return fmt.Errorf("stderr %q", hold.stderr.String())
		}
		return nil
	})
	testnet.Eventually(t, 30*time.Second, func() error {
		e, err := clients[b].Lookup(ctx, "cli/holder", "")
		if err != nil {
			return err
		}
		if string(e.Meta) != `{"by":"cli"}` {
			return fmt.Errorf("meta %s", e.Meta)
		}
		return nil
	})
	if n, err := clients[c].Dispatch(ctx, "cli/holder", []byte(`{"ping":1}`), api.ContentTypeJSON, ""); err != nil || n != 1 {
		t.Fatalf("dispatch to the CLI's name: %d, %v", n, err)
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(hold.stdout.String(), `cli/holder {"ping":1}`) {
			return fmt.Errorf("stdout %q", hold.stdout.String())
		}
		return nil
	})
	if code := hold.stop(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("registry register exited %d: %s", code, hold.stderr.String())
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		if _, err := clients[b].Lookup(ctx, "cli/holder", ""); apiCode(err) != api.CodeNotFound {
			return fmt.Errorf("lookup: %v", err)
		}
		return nil
	})

	// A named cluster of b and c only.
	for _, n := range nodes[1:] {
		if r := runCmd(t, 20*time.Second, nil, "--api", n.st.API, "registry", "connect", "game"); r.code != 0 {
			t.Fatalf("connect on %s: exit %d %s", n.name, r.code, r.stderr)
		}
	}
	if err := clients[b].Join(ctx, procs[b].Info().ID, "room/1", json.RawMessage(`"b"`), "game"); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 30*time.Second, func() error {
		ms, err := clients[c].Members(ctx, "room/1", "game", 0)
		if err != nil || len(ms) != 1 {
			return fmt.Errorf("%v, %v", ms, err)
		}
		return nil
	})
	if _, err := clients[a].Members(ctx, "room/1", "game", 0); apiCode(err) != api.CodeNotConnected {
		t.Fatalf("a, not in game: %v", err)
	}

	// The registration and the end of a's process stream show in the
	// watch on c: one batch, reason process_ended.
	procs[a].Close()
	watch.wait(t, 30*time.Second)
	out := watch.stdout.String()
	if !strings.Contains(out, "registered svc/leader") || !strings.Contains(out, "unregistered svc/leader") || !strings.Contains(out, "process_ended") {
		t.Fatalf("watch printed:\n%s", out)
	}

	// b stops cleanly: its entries go from a and c at once.
	if code := b.stop(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Fatalf("b exited %d", code)
	}
	for _, n := range []*runNode{a, c} {
		testnet.Eventually(t, 30*time.Second, func() error {
			ms, err := clients[n].Members(ctx, "chat/", "", 0)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(ms, func(m api.RegistryMember) bool { return m.Key == "chat/b" }) {
				return errors.New("chat/b is still there")
			}
			return nil
		})
	}

	// c holds a name; a second process on a is refused it.
	if _, err := clients[c].Register(ctx, procs[c].Info().ID, "svc/worker", json.RawMessage(`"c"`), ""); err != nil {
		t.Fatal(err)
	}
	pa2, err := clients[a].OpenProcess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pa2.Close()
	testnet.Eventually(t, 30*time.Second, func() error {
		e, err := clients[a].Lookup(ctx, "svc/worker", "")
		if err != nil {
			return err
		}
		if e.Addr != procs[c].Info().Addr {
			return fmt.Errorf("owner %s", e.Addr)
		}
		return nil
	})
	if _, err := clients[a].Register(ctx, pa2.Info().ID, "svc/worker", nil, ""); apiCode(err) != api.CodeTaken {
		t.Fatalf("registering c's name on a: %v", err)
	}

	// c is killed: a notices (its liveness check closes the connection)
	// and drops c's entries: its memberships go, and its name is free
	// for a to take.
	c.cmd.Process.Kill()
	testnet.Eventually(t, 60*time.Second, func() error {
		ms, err := clients[a].Members(ctx, "chat/", "", 0)
		if err != nil {
			return err
		}
		if len(ms) != 0 {
			return fmt.Errorf("%d members left", len(ms))
		}
		return nil
	})
	testnet.Eventually(t, 60*time.Second, func() error {
		_, err := clients[a].Register(ctx, pa2.Info().ID, "svc/worker", json.RawMessage(`"a"`), "")
		return err
	})

	// c comes back (same identity): its new entries reach a.
	c2 := startRunNodeIn(t, c.dir, realmName, "c", boot)
	c2.waitReady(t)
	cl := apiClient(t, c2)
	p2, err := cl.OpenProcess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if err := cl.Join(ctx, p2.Info().ID, "chat/back", nil, ""); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 60*time.Second, func() error {
		ms, err := clients[a].Members(ctx, "chat/", "", 0)
		if err != nil {
			return err
		}
		if len(ms) != 1 || ms[0].Key != "chat/back" {
			return fmt.Errorf("members %+v", ms)
		}
		return nil
	})
	// The name c held before it died stays a's on the new c: nothing of
	// the dead node comes back.
	testnet.Eventually(t, 60*time.Second, func() error {
		e, err := cl.Lookup(ctx, "svc/worker", "")
		if err != nil {
			return err
		}
		if e.Addr != pa2.Info().Addr || string(e.Meta) != `"a"` {
			return fmt.Errorf("owner %s, meta %s", e.Addr, e.Meta)
		}
		return nil
	})
}
