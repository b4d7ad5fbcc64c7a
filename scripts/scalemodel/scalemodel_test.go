package main

import (
	"math"
	"testing"
)

// TestModelInvariants runs the model at two sizes and checks what must
// hold whatever the seed: every lookup finds its provider, lookups take
// about log N hops, the overlay's degree is bounded and its diameter
// logarithmic, every component's connections fit under the connection
// manager's high water, and only the registry's full mesh does not.
func TestModelInvariants(t *testing.T) {
	o := defaultOptions()
	o.lookups = 100
	sizes := []int{50, 2000}
	if testing.Short() {
		sizes = []int{50, 500}
	}
	var rs []*result
	for _, n := range sizes {
		r, err := runModel(n, o)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
		t.Logf("N=%d: hops %.2f (max %d), requests %.1f, overlay %.2f (diameter %d), conns today %.0f, sparse idle %.0f",
			n, r.HopsMean, r.HopsMax, r.MsgsFirstMean, r.OverlayMean, r.OverlayDiameter, r.ConnToday.mean, r.ConnIdle.mean)

		if r.FoundFirst != 1 || r.FoundAll != 1 || r.PubFoundAll < 0.999 {
			t.Errorf("N=%d: lookups that found the provider: first %.3f, all %.3f; publishers that found every subscriber %.3f",
				n, r.FoundFirst, r.FoundAll, r.PubFoundAll)
		}
		if r.ClosestRight < 0.95 {
			t.Errorf("N=%d: a provide's query found %.1f%% of the true k closest", n, 100*r.ClosestRight)
		}
		// kad-dht narrows the distance by about log2(k) bits a hop once
		// past the seeds: a few hops over log(servers/k).
		bound := int(math.Ceil(math.Log2(float64(r.Servers)/float64(kBucket)))) + 2
		if r.HopsMax > bound {
			t.Errorf("N=%d: a lookup took %d hops; log2(%d servers / k) + 2 = %d", n, r.HopsMax, r.Servers, bound)
		}
		if r.OverlayMax > float64(2*rings) || r.OverlayMean < float64(2*rings)-0.5 {
			t.Errorf("N=%d: overlay degree mean %.2f, max %.0f; want about %d, at most %d", n, r.OverlayMean, r.OverlayMax, 2*rings, 2*rings)
		}
		if d := float64(r.OverlayDiameter); d > 3*math.Log2(float64(n)) {
			t.Errorf("N=%d: overlay diameter %.0f over 3 log2 N", n, d)
		}
		// Each component's own connections fit under the high water.
		kept := r.OverlayMax + float64(numRelays) + float64(o.inUse) + r.DHTProtected
		if kept >= float64(highWater) || r.DHTProtected > float64(protectedBuckets*kBucket) {
			t.Errorf("N=%d: kept connections %.0f (DHT protected %.0f) reach the high water %d", n, kept, r.DHTProtected, highWater)
		}
		if r.ConnIdle.mean >= float64(highWater) {
			t.Errorf("N=%d: idle with a sparse registry, %.0f connections per node: over the high water %d", n, r.ConnIdle.mean, highWater)
		}
		// The registry's full mesh: N-1 links wanted; past the high water
		// the connection manager trims them and the registry dials again.
		if n-1 > highWater && (r.ConnToday.mean <= float64(highWater) || r.ConnToday.trimPerSec < 1) {
			t.Errorf("N=%d: the full mesh should hold more than %d connections and be trimmed; %.0f, %.2f trimmed/s",
				n, highWater, r.ConnToday.mean, r.ConnToday.trimPerSec)
		}
		if n-1 <= highWater && r.ConnToday.trimPerSec != 0 {
			t.Errorf("N=%d: the full mesh fits under the high water, yet %.2f connections/s were trimmed", n, r.ConnToday.trimPerSec)
		}
	}
	small, large := rs[0], rs[1]
	if large.HopsMean <= small.HopsMean || large.FloodHops < small.FloodHops {
		t.Errorf("hops do not grow with N: lookups %.2f -> %.2f, floods %d -> %d", small.HopsMean, large.HopsMean, small.FloodHops, large.FloodHops)
	}
	if large.DigestBytes <= small.DigestBytes*(large.N/small.N-1) {
		t.Errorf("a registry digest should grow with N: %d -> %d bytes", small.DigestBytes, large.DigestBytes)
	}
}

// TestDigestBytes checks the modelled digest against the registry's wire
// format for a realm of one: frame header, cluster, resync, count, one stream.
func TestDigestBytes(t *testing.T) {
	// 6 + 1 (empty cluster) + 1 + 1 (count) + (1 + 38 + 9 + 2)
	if got, want := digestBytes(1, 38), 6+1+1+1+50; got != want {
		t.Fatalf("digestBytes(1) = %d, want %d", got, want)
	}
}
