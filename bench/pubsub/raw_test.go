package pubsubbench

import (
	"bufio"
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"

	"github.com/macula-io/macula/frame"
)

const rawProto = "/macula-bench/raw/1.0.0"

func rawHost(tb testing.TB) host.Host {
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.DisableRelay(), libp2p.DisableMetrics(),
	)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// setUpRaw is the transport's ceiling: one writer goroutine per subscriber
// host writes 128-byte frames through a bufio.Writer onto one long-lived
// libp2p QUIC stream; each subscriber reads them with a frame.Reader and
// hands them to a recorder. No routing, no queues, no drops: a writer that
// is ahead blocks in Write.
func setUpRaw(tb testing.TB, subs int) *system {
	pub := rawHost(tb)
	hosts := []host.Host{pub}
	sys := &system{name: "raw-quic", subs: subs}
	var streams []network.Stream
	var wg sync.WaitGroup
	for i := 0; i < subs; i++ {
		h := rawHost(tb)
		hosts = append(hosts, h)
		r := &recorder{}
		sys.recs = append(sys.recs, r)
		h.SetStreamHandler(rawProto, func(s network.Stream) {
			wg.Add(1)
			defer wg.Done()
			fr := frame.NewReader(bufio.NewReaderSize(s, 64<<10), 1<<20)
			for {
				_, p, err := fr.Next()
				if err != nil {
					s.Reset()
					return
				}
				r.record(p)
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := pub.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
			tb.Fatal(err)
		}
		s, err := pub.NewStream(ctx, h.ID(), rawProto)
		cancel()
		if err != nil {
			tb.Fatal(err)
		}
		streams = append(streams, s)
	}
	// One writer per stream, fed through a channel of stamped payloads
	// from the publishing goroutine, so "publish" has the same shape as
	// the others: the loop hands each message to every subscriber's
	// writer.
	type batch struct{ b []byte }
	chans := make([]chan []byte, subs)
	var wwg sync.WaitGroup
	for i, s := range streams {
		ch := make(chan []byte, 8192)
		chans[i] = ch
		wwg.Add(1)
		go func(s network.Stream, ch chan []byte) {
			defer wwg.Done()
			bw := bufio.NewWriterSize(s, 64<<10)
			var hdr [frame.HeaderLen]byte
			for p := range ch {
				frame.AppendHeader(hdr[:0], 1, 1, len(p))
				bw.Write(hdr[:])
				bw.Write(p)
				if len(ch) == 0 {
					if bw.Flush() != nil {
						return
					}
				}
			}
			bw.Flush()
		}(s, ch)
	}
	sys.pub = func(p []byte) error {
		// Each writer needs its own copy: the caller reuses p.
		for _, ch := range chans {
			c := make([]byte, len(p))
			copy(c, p)
			ch <- c
		}
		return nil
	}
	sys.close = func() {
		for _, ch := range chans {
			close(ch)
		}
		wwg.Wait()
		for _, s := range streams {
			s.Reset()
		}
		for _, h := range hosts {
			h.Close()
		}
		wg.Wait()
	}
	sys.diag = func() string { return quicStats(pub) }
	warmUp(tb, sys.recs, sys.pub)
	return sys
}

var _ = binary.BigEndian
