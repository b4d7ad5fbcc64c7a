package pubsub

import "strings"

// keyPrefix starts every DHT key of pubsub interest.
const keyPrefix = "pubsub:"

// interestKey returns the DHT key a subscriber provides for pattern, a
// pattern valid for realmName: "pubsub:" and the pattern's literal prefix,
// the segments before its first wildcard. Wildcards among the realm's own
// segments can only match the realm's segments on a topic of this realm, so
// they are read as those segments, and the prefix always holds at least the
// whole realm:
//
//	io.acme.orders.placed   -> pubsub:io.acme.orders.placed
//	io.acme.orders.*        -> pubsub:io.acme.orders
//	io.acme.orders.eu.>     -> pubsub:io.acme.orders.eu
//	io.acme.>               -> pubsub:io.acme.orders     (realm io.acme.orders)
//	*.acme.orders.*.placed  -> pubsub:io.acme.orders
func interestKey(realmName, pattern string) string {
	var b strings.Builder
	b.WriteString(keyPrefix)
	r, p := realmName, pattern
	first := true
	for p != "" {
		ps, prest, _ := strings.Cut(p, ".")
		rs, rrest, rmore := strings.Cut(r, ".")
		inRealm := r != ""
		var seg string
		switch {
		case ps == ">":
			if inRealm {
				// Covers the rest of the realm (and more).
				if !first {
					b.WriteByte('.')
				}
				b.WriteString(r)
			}
			return b.String()
		case ps == "*" && inRealm:
			seg = rs
		case ps == "*":
			return b.String()
		default:
			seg = ps
		}
		if !first {
			b.WriteByte('.')
		}
		b.WriteString(seg)
		first = false
		p = prest
		if inRealm {
			if rmore {
				r = rrest
			} else {
				r = ""
			}
		}
	}
	return b.String()
}

// topicKeys returns the DHT keys a publisher of topic, a concrete topic of
// realmName, looks up: "pubsub:" and every prefix of the topic that holds at
// least the realm, shortest first. Every pattern that matches the topic has
// one of them as its interestKey, because a pattern's literal prefix is a
// prefix of every topic it matches. A topic n segments below its realm has
// n+1 keys.
func topicKeys(realmName, topic string) []string {
	var keys []string
	for i := len(realmName); i <= len(topic); i++ {
		if i == len(topic) || topic[i] == '.' {
			keys = append(keys, keyPrefix+topic[:i])
		}
	}
	return keys
}
