package registry

// The registry's partition test drives API clients inside the lab's
// namespaces: the test binary doubles as that client (a "driver"). With
// REGISTRY_DRIVER set, TestMain runs runDriver instead of the tests: it
// reads commands from stdin, one a line, acts through the node API at
// REGISTRY_DRIVER_API, and answers each with one JSON line on stdout:
//
//	open P            a process whose lifetime is an API stream, named P
//	reg P KEY META    register P under KEY
//	unreg P KEY       unregister it
//	join P KEY META   P joins the group KEY
//	leave P KEY       P leaves it
//	close P           end P (its stream closes)
//	dump              every name and member, as the node sees them
//	losses            the names each process lost to another, as told
//	nodes             the number of nodes of the registry's default cluster
//	peers             the number of peers the node is connected to
//
// The answer is {"ok":true,...} or {"ok":false,"code":...,"err":...}.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/macula-io/macula/api"
)

// driverAnswer is one line of a driver's output.
type driverAnswer struct {
	OK      bool               `json:"ok"`
	Code    string             `json:"code,omitempty"`
	Err     string             `json:"err,omitempty"`
	Addr    string             `json:"addr,omitempty"`
	Names   []driverEntry      `json:"names,omitempty"`
	Members []driverEntry      `json:"members,omitempty"`
	Losses  []driverLoss       `json:"losses,omitempty"`
	Nodes   int                `json:"nodes,omitempty"`
	Procs   map[string]string  `json:"procs,omitempty"`
	Extra   map[string]float64 `json:"extra,omitempty"`
}

type driverEntry struct {
	Key  string `json:"key"`
	Addr string `json:"addr"`
	Meta string `json:"meta"`
}

type driverLoss struct {
	Proc   string `json:"proc"`
	Key    string `json:"key"`
	Winner string `json:"winner"`
	Reason string `json:"reason"`
}

func runDriver() int {
	c := api.NewClient(os.Getenv("REGISTRY_DRIVER_API"))
	defer c.Close()
	ctx := context.Background()
	d := &driver{c: c, procs: map[string]*api.ProcessStream{}}
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "quit" {
			break
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		a := d.do(rctx, f)
		cancel()
		if err := out.Encode(a); err != nil {
			return 1
		}
	}
	for _, p := range d.procs {
		p.Close()
	}
	d.wg.Wait()
	return 0
}

type driver struct {
	c     *api.Client
	procs map[string]*api.ProcessStream
	wg    sync.WaitGroup

	mu     sync.Mutex
	losses []driverLoss
}

func (d *driver) do(ctx context.Context, f []string) (a driverAnswer) {
	fail := func(err error) driverAnswer {
		var ae *api.APIError
		if errors.As(err, &ae) {
			return driverAnswer{Code: ae.Code, Err: ae.Message}
		}
		return driverAnswer{Code: "error", Err: err.Error()}
	}
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	p := d.procs[arg(1)]
	needProc := func() error {
		if p == nil {
			return fmt.Errorf("no process %q", arg(1))
		}
		return nil
	}
	meta := func(i int) json.RawMessage {
		if arg(i) == "" {
			return nil
		}
		b, _ := json.Marshal(arg(i))
		return b
	}
	var err error
	switch f[0] {
	case "open":
		ps, err := d.c.OpenProcess(context.Background())
		if err != nil {
			return fail(err)
		}
		d.procs[arg(1)] = ps
		name := arg(1)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			for {
				m, err := ps.Next()
				if err != nil {
					return
				}
				if m.Kind == "lost" {
					d.mu.Lock()
					d.losses = append(d.losses, driverLoss{Proc: name, Key: m.Key, Winner: m.Winner, Reason: m.Reason})
					d.mu.Unlock()
				}
			}
		}()
		return driverAnswer{OK: true, Addr: ps.Info().Addr}
	case "reg":
		if err = needProc(); err == nil {
			_, err = d.c.Register(ctx, p.Info().ID, arg(2), meta(3), "")
		}
	case "unreg":
		if err = needProc(); err == nil {
			err = d.c.Unregister(ctx, p.Info().ID, arg(2), "")
		}
	case "join":
		if err = needProc(); err == nil {
			err = d.c.Join(ctx, p.Info().ID, arg(2), meta(3), "")
		}
	case "leave":
		if err = needProc(); err == nil {
			err = d.c.Leave(ctx, p.Info().ID, arg(2), "")
		}
	case "close":
		if err = needProc(); err == nil {
			err = p.Close()
			delete(d.procs, arg(1))
			// The node ends the process when it sees the stream close;
			// wait until it is gone from the node's processes.
			for err == nil {
				list, lerr := d.c.Processes(ctx)
				if lerr != nil {
					err = lerr
					break
				}
				found := false
				for _, x := range list {
					found = found || x.Addr == p.Info().Addr
				}
				if !found {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	case "dump":
		names, err := d.c.Names(ctx, "", "")
		if err != nil {
			return fail(err)
		}
		ms, err := d.c.Members(ctx, "", "", 0)
		if err != nil {
			return fail(err)
		}
		a := driverAnswer{OK: true, Names: []driverEntry{}, Members: []driverEntry{}}
		for _, e := range names {
			a.Names = append(a.Names, driverEntry{Key: e.Key, Addr: e.Addr, Meta: string(e.Meta)})
		}
		for _, m := range ms {
			a.Members = append(a.Members, driverEntry{Key: m.Key, Addr: m.Addr, Meta: string(m.Meta)})
		}
		return a
	case "losses":
		d.mu.Lock()
		defer d.mu.Unlock()
		return driverAnswer{OK: true, Losses: append([]driverLoss{}, d.losses...)}
	case "peers":
		ps, err := d.c.Peers(ctx)
		if err != nil {
			return fail(err)
		}
		return driverAnswer{OK: true, Nodes: len(ps)}
	case "nodes":
		info, err := d.c.Registry(ctx)
		if err != nil {
			return fail(err)
		}
		return driverAnswer{OK: true, Nodes: len(info.Clusters[0].Nodes)}
	default:
		err = fmt.Errorf("unknown command %q", f[0])
	}
	if err != nil {
		return fail(err)
	}
	return driverAnswer{OK: true}
}
