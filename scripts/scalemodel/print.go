package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// printResults prints one table per subject, a column per realm size.
func printResults(w io.Writer, o options, rs []*result) {
	fmt.Fprintf(w, "Assumed: %d sites (0.5 ms one way within a site, 10-80 ms between two), %.0f%% public nodes (DHT servers), "+
		"%.0f%% behind symmetric NAT, the rest behind NATs hole punching crosses; %d relays; no churn.\n",
		o.sites, 100*o.public, 100*o.sym, o.relays)
	fmt.Fprintf(w, "Load: each node uses %d peers (half pub/sub subscribers, tagged %d; half RPC callees) and makes %.0f calls/s of %.0f KiB; "+
		"a topic with %.0f%% of the nodes subscribed, %.0f%% of the nodes publishing; %d keys provided per node.\n",
		o.inUse, pubsubTagValue, o.calls, o.callKB, 100*o.subs, 100*o.pubs, keysPerNode)
	fmt.Fprintf(w, "Parameters: k=%d alpha=%d beta=%d, RT refresh %v, reprovide %v (records live %v); rings=%d, heartbeat %v, probe timeout %v; "+
		"conn manager %d/%d, grace %v, trim every %v; registry anti-entropy %v (idle: every %d ticks), %d dials in flight; "+
		"relay: %d reservations, %d circuits per peer, %v / %d MiB per circuit.\n\n",
		kBucket, alpha, beta, rtRefresh, reprovide, provideTTL, rings, probeInterval, probeTimeout,
		lowWater, highWater, grace, trimEvery, antiEntropy, quietTicks, maxDials,
		relayRes.MaxReservations, relayRes.MaxCircuits, relayLimitTime, relayLimitData>>20)

	t := newTable(w, rs)
	t.section("Realm")
	t.row("nodes / DHT servers / cone NAT / symmetric NAT", func(r *result) string {
		return fmt.Sprintf("%d / %d / %d / %d", r.N, r.Servers, r.Cone, r.Sym)
	})

	t.section("Membership (member.Overlay, idle)")
	t.row("overlay links per node, mean / max", func(r *result) string { return fmt.Sprintf("%.2f / %.0f", r.OverlayMean, r.OverlayMax) })
	t.row("heartbeats sent per node per s", func(r *result) string { return fmt.Sprintf("%.1f", r.HeartbeatsPerSec) })
	t.row("news (join, change, failure): fewest hops / hops taken / time to every node", func(r *result) string {
		return fmt.Sprintf("%d / %d / %s", r.OverlayDiameter, r.FloodHops, ms(r.FloodTime))
	})
	t.row("  frames realm-wide per piece of news", func(r *result) string { return fmt.Sprintf("%d", r.FloodMsgs) })
	t.row("crash known everywhere (probe timeout + flood)", func(r *result) string { return secs(r.CrashKnown) })
	t.row("a newcomer's first sync (whole view)", func(r *result) string { return bytesStr(float64(r.JoinViewBytes)) })

	t.section("DHT (kad-dht query over real routing tables)")
	t.row("routing table of a server: peers / protected (2 first buckets)", func(r *result) string {
		return fmt.Sprintf("%.0f / %.0f", r.RTMean, r.DHTProtected)
	})
	t.row("lookup, first provider: found", func(r *result) string { return fmt.Sprintf("%.1f%% of %d", 100*r.FoundFirst, r.Lookups) })
	t.row("  hops mean / p95 / max", func(r *result) string {
		return fmt.Sprintf("%.2f / %d / %d", r.HopsMean, r.HopsP95, r.HopsMax)
	})
	t.row("  requests mean / p95", func(r *result) string { return fmt.Sprintf("%.1f / %d", r.MsgsFirstMean, r.MsgsFirstP95) })
	t.row("  time p50 / p95", func(r *result) string { return ms(r.TimeFirstP50) + " / " + ms(r.TimeFirstP95) })
	t.row("lookup, all providers (to the end): found / requests / p50", func(r *result) string {
		return fmt.Sprintf("%.1f%% / %.1f / %s", 100*r.FoundAll, r.MsgsAllMean, ms(r.TimeAllP50))
	})
	t.row("provide: messages (query + k stores) / true k closest hit", func(r *result) string {
		return fmt.Sprintf("%.1f / %.1f%%", r.ProvideMsgs, 100*r.ClosestRight)
	})
	t.row("refresh: requests per refresh / per node per s", func(r *result) string {
		return fmt.Sprintf("%.0f / %.2f", r.RefreshMsgs, r.RefreshPerSec)
	})
	t.row("reprovide (10 keys, every 12 h): messages per node per s", func(r *result) string { return fmt.Sprintf("%.4f", r.ReprovidePerSec) })
	t.row("requests a server answers per s, idle", func(r *result) string { return fmt.Sprintf("%.2f", r.ServerInPerSec) })
	t.row("under load (rpc lookups every 10 s per procedure): requests per node / per server per s", func(r *result) string {
		return fmt.Sprintf("%.1f / %.1f", r.DHTLoadPerSec, r.ServerLoadPerSec)
	})
	t.row("ping-and-evict, upper bound, per node per s", func(r *result) string { return fmt.Sprintf("%.3f", r.PingEvictPerSec) })

	t.section("Pub/sub interest")
	t.row("subscribers / publishers", func(r *result) string { return fmt.Sprintf("%d / %d", r.Subs, r.Pubs) })
	t.row("a subscriber's provide: messages", func(r *result) string { return fmt.Sprintf("%.1f", r.SubProvideMsgs) })
	t.row("a publisher's lookup (every 2 s per key): requests / p50", func(r *result) string {
		return fmt.Sprintf("%.1f / %s", r.PubLookupMsgs, ms(r.PubLookupTime))
	})
	t.row("  found every subscriber", func(r *result) string { return fmt.Sprintf("%.1f%%", 100*r.PubFoundAll) })
	t.row("new subscriber, not connected: known to a publisher within", func(r *result) string { return secs(r.NewSubKnown) })
	t.row("realm-level key: requests/s at its busiest server", func(r *result) string {
		return fmt.Sprintf("%.1f (%.1f per lookup)", r.HotReqPerSec, r.HotShare)
	})
	t.row("  one answer naming every subscriber", func(r *result) string { return bytesStr(float64(r.AnswerBytes)) })

	t.section("Registry (full mesh today)")
	t.row("links wanted per node / digest size", func(r *result) string {
		return fmt.Sprintf("%d / %s", r.N-1, bytesStr(float64(r.DigestBytes)))
	})
	t.row("digests per node if the mesh held: idle / anything changing", func(r *result) string {
		return bytesStr(r.RegIdleBytesPerSec) + "/s / " + bytesStr(r.RegBusyBytesPerSec) + "/s"
	})
	t.row("frames per write (one delta per peer)", func(r *result) string { return fmt.Sprintf("%d", r.RegDeltaFramesPerWr) })

	t.section("Connections per node (simulated connection manager, last minute)")
	t.row("kept: overlay + relays + in use; DHT protected when connected", func(r *result) string {
		return fmt.Sprintf("%.1f + %d + %d; %.0f", r.OverlayMean, min(numRelays, o.relays), o.inUse, r.DHTProtected)
	})
	t.row("secure realm (registry dials every member): mean / max", func(r *result) string {
		return fmt.Sprintf("%.0f / %.0f", r.ConnToday.mean, r.ConnToday.max)
	})
	t.row("  opened / trimmed per node per s", func(r *result) string {
		return fmt.Sprintf("%.2f / %.2f", r.ConnToday.newPerSec, r.ConnToday.trimPerSec)
	})
	t.row("  samples over high water / dials refused (resource limits) per node per s", func(r *result) string {
		return fmt.Sprintf("%.0f%% / %.2f", 100*r.ConnToday.overHighFrac, r.ConnToday.refusedPerSec)
	})
	t.row("  digests of new registry sessions per node", func(r *result) string { return bytesStr(r.SessionBytesPerSec) + "/s" })
	t.row("  liveness pings / QUIC keep-alives per node per s", func(r *result) string {
		return fmt.Sprintf("%.1f / %.1f", r.LivenessPerSec, r.KeepAlivePerSec)
	})
	t.row("registry over a sparse overlay, idle: mean / max", func(r *result) string {
		return fmt.Sprintf("%.0f / %.0f", r.ConnIdle.mean, r.ConnIdle.max)
	})
	t.row("  opened / trimmed per node per s; over high water", func(r *result) string {
		return fmt.Sprintf("%.2f / %.2f; %.0f%%", r.ConnIdle.newPerSec, r.ConnIdle.trimPerSec, 100*r.ConnIdle.overHighFrac)
	})
	t.row("registry over a sparse overlay, load: mean / max", func(r *result) string {
		return fmt.Sprintf("%.0f / %.0f", r.ConnSparse.mean, r.ConnSparse.max)
	})
	t.row("  opened / trimmed per node per s; over high water", func(r *result) string {
		return fmt.Sprintf("%.2f / %.2f; %.0f%%", r.ConnSparse.newPerSec, r.ConnSparse.trimPerSec, 100*r.ConnSparse.overHighFrac)
	})

	t.section("Relays")
	t.row("private nodes / reservations wanted / capacity", func(r *result) string {
		return fmt.Sprintf("%d / %d / %d", r.Private, r.ResWanted, r.ResCapacity)
	})
	t.row("relays needed for every reservation / private nodes left without one", func(r *result) string {
		return fmt.Sprintf("%d / %d", r.RelaysNeeded, r.NoRelay)
	})
	t.row("symmetric pairs relayed: overlay / in use / registry mesh", func(r *result) string {
		return fmt.Sprintf("%d / %d / %d", r.SymOverlayPairs, r.SymInUsePairs, r.SymRegistryPairs)
	})
	t.row("circuits per relay: sparse registry / today", func(r *result) string {
		return fmt.Sprintf("%.0f / %.0f", r.CircuitsPerRelaySparse, r.CircuitsPerRelayToday)
	})
	t.row("symmetric peers one symmetric node needs relayed (today)", func(r *result) string {
		return fmt.Sprintf("%d (limit %d)", r.SymPeersMax, numRelays*relayRes.MaxCircuits)
	})
	t.row("call traffic through each relay", func(r *result) string { return bytesStr(r.RelayBytesPerSec) + "/s" })
	t.row("punch circuits realm-wide per s (today / sparse)", func(r *result) string {
		return fmt.Sprintf("%.0f / %.1f", r.PunchCircuitsPerSec,
			r.ConnSparse.newPerSec*float64(r.N)/2*sq(float64(r.Private)/float64(r.N)))
	})
	t.flush()
}

func sq(x float64) float64 { return x * x }

type table struct {
	tw *tabwriter.Writer
	rs []*result
}

func newTable(w io.Writer, rs []*result) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight), rs: rs}
}

func (t *table) section(name string) {
	cols := []string{name}
	for _, r := range t.rs {
		cols = append(cols, fmt.Sprintf("N=%d", r.N))
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t")+"\t")
}

func (t *table) row(name string, f func(*result) string) {
	cols := []string{"  " + name}
	for _, r := range t.rs {
		cols = append(cols, f(r))
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t")+"\t")
}

func (t *table) flush() { t.tw.Flush() }

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func bytesStr(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
