package natlab

// The test binary doubles as the program that runs inside the lab's
// namespaces: with NATLAB_HELPER set, TestMain runs a helper instead of the
// tests. The helpers use the nat package exactly as a node does.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"go.uber.org/fx"

	"github.com/macula-io/macula/nat"
)

// probeOutput is what the probe helper prints (one JSON line).
type probeOutput struct {
	Info     nat.Info `json:"info"`
	QUICPort int      `json:"quic_port,omitempty"`
	Err      string   `json:"err,omitempty"`
}

func runHelper(role string) int {
	switch role {
	case "probe":
		return helperProbe()
	case "stunserver":
		return helperSTUNServer()
	}
	fmt.Fprintf(os.Stderr, "unknown NATLAB_HELPER %q\n", role)
	return 2
}

// helperCommand runs this test binary inside h as helper role.
func helperCommand(ctx context.Context, h *Host, role string, env ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := h.Command(ctx, exe)
	cmd.Env = append(append(os.Environ(), "NATLAB_HELPER="+role), env...)
	return cmd
}

// helperProbe: a nat.Prober on a QUIC host's socket (NATLAB_QUIC=1) or a
// plain UDP socket, one probe of NATLAB_SERVERS, the result as JSON on
// stdout; then, with NATLAB_HOLD=1, it stays up (answering STUN with
// NATLAB_RESPOND=1) until SIGTERM.
func helperProbe() int {
	cfg := nat.Config{
		Servers:         strings.Split(os.Getenv("NATLAB_SERVERS"), ","),
		Interval:        -1,
		RTO:             100 * time.Millisecond,
		Retransmits:     2,
		Respond:         os.Getenv("NATLAB_RESPOND") == "1",
		NoBehaviorTests: os.Getenv("NATLAB_ADDRONLY") == "1",
		Logger:          slog.New(slog.DiscardHandler),
	}
	var out probeOutput
	var conn net.PacketConn
	var h host.Host
	if os.Getenv("NATLAB_QUIC") == "1" {
		var cm *quicreuse.ConnManager
		var err error
		h, err = libp2p.New(
			libp2p.ListenAddrStrings("/ip4/0.0.0.0/udp/0/quic-v1"),
			libp2p.Transport(libp2pquic.NewTransport),
			libp2p.DisableRelay(),
			libp2p.DisableMetrics(),
			libp2p.WithFxOption(fx.Populate(&cm)),
		)
		if err != nil {
			return fail(err)
		}
		defer h.Close()
		for _, a := range h.Network().ListenAddresses() {
			if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err == nil {
				_, hostport, _ := manet.DialArgs(a)
				out.QUICPort = int(netip.MustParseAddrPort(hostport).Port())
			}
		}
		conn, err = nat.SharedQUICConn(cm, h.Network().ListenAddresses())
		if err != nil {
			return fail(err)
		}
	} else {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{})
		if err != nil {
			return fail(err)
		}
		conn = c
	}
	p, err := nat.New(cfg, conn)
	if err != nil {
		conn.Close()
		return fail(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out.Info, err = p.Probe(ctx)
	if err != nil {
		out.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(out)
	if os.Getenv("NATLAB_HOLD") == "1" {
		waitSignal()
	}
	return 0
}

// helperSTUNServer: a nat.Server on NATLAB_IPS x NATLAB_PORTS (two of each),
// "ready" on stdout, until SIGTERM.
func helperSTUNServer() int {
	ips := strings.Split(os.Getenv("NATLAB_IPS"), ",")
	ports := strings.Split(os.Getenv("NATLAB_PORTS"), ",")
	if len(ips) != 2 || len(ports) != 2 {
		return fail(fmt.Errorf("NATLAB_IPS and NATLAB_PORTS need two values each"))
	}
	var socks [4]net.PacketConn
	for i := range 4 {
		port, _ := strconv.Atoi(ports[i&1])
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ips[i>>1]), Port: port})
		if err != nil {
			return fail(err)
		}
		socks[i] = c
	}
	s, err := nat.NewServer(nat.ServerConfig{Software: "macula natlab"},
		nat.Sockets{Primary: socks[0], AltPort: socks[1], AltIP: socks[2], AltBoth: socks[3]})
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	fmt.Println("ready")
	waitSignal()
	return 0
}

func waitSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}

func fail(err error) int {
	json.NewEncoder(os.Stdout).Encode(probeOutput{Err: err.Error()})
	return 1
}
