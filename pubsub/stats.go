package pubsub

import (
	"slices"
	"strings"
	"sync/atomic"
)

// patternStat counts for all the local subscriptions of one pattern, for
// as long as the pattern has one.
type patternStat struct {
	delivered, dropped atomic.Uint64
}

// PatternStats are the counters of one pattern of this node's
// subscriptions: they start when the pattern gets its first subscription
// and end with its last.
type PatternStats struct {
	Pattern string `json:"pattern"`
	// Subscriptions is the number of live subscriptions with the pattern.
	Subscriptions int `json:"subscriptions"`
	// Delivered counts messages handed to them (handlers that returned,
	// or channel sends); Dropped the messages they lost to a full queue.
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
}

// PatternStats returns the counters of each pattern subscribed on this
// node, sorted by pattern (at most MaxPatterns).
func (ps *PubSub) PatternStats() []PatternStats {
	ps.mu.Lock()
	out := make([]PatternStats, 0, len(ps.pstats))
	for p, st := range ps.pstats {
		out = append(out, PatternStats{Pattern: p, Subscriptions: ps.interest[p], Delivered: st.delivered.Load(), Dropped: st.dropped.Load()})
	}
	ps.mu.Unlock()
	slices.SortFunc(out, func(a, b PatternStats) int { return strings.Compare(a.Pattern, b.Pattern) })
	return out
}

// TopicStats are the counters of one topic this node published to.
type TopicStats struct {
	Topic string `json:"topic"`
	// Published counts the successful Publish calls to the topic since it
	// was first published (or since the node forgot it: a topic not
	// published for 15 interest refreshes is forgotten).
	Published uint64 `json:"published"`
}

// TopicStats returns the counters of the topics this node publishes to
// (at most 16384, the cache of topic routes), sorted by topic.
func (ps *PubSub) TopicStats() []TopicStats {
	ps.routesMu.RLock()
	out := make([]TopicStats, 0, len(ps.routes))
	for t, tr := range ps.routes {
		out = append(out, TopicStats{Topic: t, Published: tr.published.Load()})
	}
	ps.routesMu.RUnlock()
	slices.SortFunc(out, func(a, b TopicStats) int { return strings.Compare(a.Topic, b.Topic) })
	return out
}
